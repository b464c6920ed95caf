-- Every operating period: live unless its last create/delete (by at; delete wins a tie) is a
-- delete; bounds and organization from its latest create. Periods never created are left out.
with period_events as (
    select * from all_period_events
),

last_events as (
    select
        operating_period_id,
        event,
        "at"
    from period_events
    qualify row_number() over (
        partition by operating_period_id
        order by "at" desc, (event = 'delete') desc, event_id
    ) = 1
),

latest_creates as (
    select *
    from period_events
    where event = 'create'
    qualify row_number() over (
        partition by operating_period_id
        order by "at" desc, period_start desc, period_finish desc, organization_id desc, event_id
    ) = 1
),

final as (
    select
        c.operating_period_id,
        c.organization_id,
        c.period_start as start_at,
        c.period_finish as finish_at,
        l.event = 'delete' as is_deleted,
        c."at" as created_at,
        l."at" as updated_at
    from latest_creates as c
    inner join last_events as l using (operating_period_id)
)

select * from final
order by operating_period_id
