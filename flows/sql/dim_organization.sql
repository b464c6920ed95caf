-- One row per organization seen in any event, with its number of distinct vehicles.
with all_events as (
    select
        organization_id,
        "on",
        entity_id,
        "at"
    from events
    where organization_id is not null
),

final as (
    select
        organization_id,
        min("at") as first_seen_at,
        max("at") as last_seen_at,
        count(distinct entity_id) filter (where "on" = 'vehicle') as vehicles
    from all_events
    group by organization_id
)

select * from final
order by organization_id
