-- Insert the vehicle events of this load's event dates (after delete_fact_vehicle_event.sql).
insert into warehouse.fact_vehicle_event (
    event_id,
    vehicle_id,
    organization_id,
    event,
    at,
    lat,
    lng,
    location_at,
    is_valid_point,
    event_date
)
select
    event_id,
    vehicle_id,
    organization_id,
    event,
    at,
    lat,
    lng,
    location_at,
    is_valid_point,
    event_date
from stage_fact_vehicle_event
where event_date = any(%(event_dates)s::date[])
