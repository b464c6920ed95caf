-- The events of one event date, in input order: accepted lines that are the first delivery
-- of their event_id within the source day. Parameters: $event_date, $ingested_at, $source_day.
with

first_deliveries as (
    select *
    from parsed
    where
        reason is null
        and not is_duplicate
        and event_date = $event_date
)

select
    event_id,
    event,
    "on",
    "at",
    entity_id,
    organization_id,
    lat,
    lng,
    location_at,
    period_start,
    period_finish,
    break_vehicle_id,
    is_valid_point,
    source_key,
    line_number,
    $ingested_at::timestamptz as ingested_at,
    event_date,
    $source_day::date as source_day
from first_deliveries
