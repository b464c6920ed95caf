-- Every distinct vehicle event of the event dates this run touches (unordered: each event date
-- partition is sorted by "at", event_id when it is written).
with vehicle_events as (
    select * from events
    where "on" = 'vehicle'
        and event_date in (select event_date from touched_dates)
),

final as (
    select
        event_id,
        entity_id as vehicle_id,
        organization_id,
        event,
        "at",
        lat,
        lng,
        location_at,
        is_valid_point,
        event_date
    from vehicle_events
)

select * from final
