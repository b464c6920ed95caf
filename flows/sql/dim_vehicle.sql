-- One row per vehicle; its organization is that of its latest event (ties: lowest
-- organization, then event id), from the per-date summaries of int_entity_dates.
with vehicle_days as (
    select * from entity_dates
    where "on" = 'vehicle'
),

latest_organization as (
    select
        entity_id as vehicle_id,
        organization_id
    from vehicle_days
    qualify row_number() over (
        partition by entity_id
        order by last_at desc, organization_id, last_event_id
    ) = 1
),

activity as (
    select
        entity_id as vehicle_id,
        min(first_at) as first_seen_at,
        max(last_at) as last_seen_at,
        min(registered_at) as registered_at,
        max(deregistered_at) as deregistered_at,
        sum(events)::bigint as events
    from vehicle_days
    group by entity_id
),

final as (
    select
        a.vehicle_id,
        o.organization_id,
        a.first_seen_at,
        a.last_seen_at,
        a.registered_at,
        a.deregistered_at,
        a.events
    from activity as a
    inner join latest_organization as o using (vehicle_id)
)

select * from final
order by vehicle_id
