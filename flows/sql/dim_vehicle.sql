-- One row per vehicle; its organization is that of its latest event.
with vehicle_events as (
    select
        entity_id as vehicle_id,
        organization_id,
        event,
        "at",
        event_id
    from events
    where "on" = 'vehicle'
),

latest_organization as (
    select
        vehicle_id,
        organization_id
    from vehicle_events
    qualify row_number() over (
        partition by vehicle_id
        order by "at" desc, organization_id, event_id
    ) = 1
),

activity as (
    select
        vehicle_id,
        min("at") as first_seen_at,
        max("at") as last_seen_at,
        min("at") filter (where event = 'register') as registered_at,
        max("at") filter (where event = 'deregister') as deregistered_at,
        count(*) as events
    from vehicle_events
    group by vehicle_id
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
