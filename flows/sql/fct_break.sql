-- Every break, by the operating-period rule: live unless its last create/delete (by at; delete
-- wins a tie) is a delete; bounds, vehicle and organization from its latest create. Breaks
-- never created are left out.
with break_events as (
    select * from all_break_events
),

last_events as (
    select
        break_id,
        event,
        "at"
    from break_events
    qualify row_number() over (
        partition by break_id
        order by "at" desc, (event = 'delete') desc, event_id
    ) = 1
),

latest_creates as (
    select *
    from break_events
    where event = 'create'
    qualify row_number() over (
        partition by break_id
        order by
            "at" desc,
            break_start desc,
            break_finish desc,
            organization_id desc,
            vehicle_id desc,
            event_id
    ) = 1
),

final as (
    select
        c.break_id,
        c.vehicle_id,
        c.organization_id,
        c.break_start as start_at,
        c.break_finish as finish_at,
        l.event = 'delete' as is_deleted,
        c."at" as created_at,
        l."at" as updated_at
    from latest_creates as c
    inner join last_events as l using (break_id)
)

select * from final
order by break_id
