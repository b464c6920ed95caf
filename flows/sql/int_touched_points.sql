-- The valid location points of the touched event dates, as they are now; the state keeps them
-- by the date of location_at, so a period's points are found without reading its events.
select
    entity_id as vehicle_id,
    organization_id,
    location_at,
    "at",
    lat,
    lng,
    location_at::date as location_date,
    event_date
from events
where "on" = 'vehicle'
    and event = 'update'
    and is_valid_point
