-- One row per organization seen in any event, with its number of distinct vehicles.
with entity_days as (
    select * from entity_dates
    where organization_id is not null
),

final as (
    select
        organization_id,
        min(first_at) as first_seen_at,
        max(last_at) as last_seen_at,
        count(distinct entity_id) filter (where "on" = 'vehicle') as vehicles
    from entity_days
    group by organization_id
)

select * from final
order by organization_id
