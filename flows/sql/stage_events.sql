-- Accepted lines as typed events, in input order: the first delivery of each distinct event
-- within the source day (lowest row_no: source key, then line number), with event_id and
-- is_valid_point as docs/data-model.md defines them. Parameters: $ingested_at, $source_day.
-- Deduplicated with a semi join rather than a window so that input order is kept.
with

accepted as (
    select *
    from parsed
    where reason is null
),

identified as materialized (
    select
        *,
        md5(concat(
            event, '|',
            "on", '|',
            strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ'), '|',
            entity_id, '|',
            organization_id, '|',
            lat::varchar, '|',
            lng::varchar, '|',
            strftime(location_at, '%Y-%m-%dT%H:%M:%S.%fZ'), '|',
            strftime(period_start, '%Y-%m-%dT%H:%M:%S.%fZ'), '|',
            strftime(period_finish, '%Y-%m-%dT%H:%M:%S.%fZ')
        )) as event_id
    from accepted
),

first_deliveries as (
    select min(row_no) as row_no
    from identified
    group by event_id
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
    coalesce(
        "on" = 'vehicle'
        and event = 'update'
        and location_at is not null
        and lat between -90 and 90
        and lng between -180 and 180
        and not (lat = 0 and lng = 0),
        false
    ) as is_valid_point,
    source_key,
    line_number,
    $ingested_at::timestamptz as ingested_at,
    "at"::date as event_date,
    $source_day::date as source_day,
    row_no
from identified
where row_no in (select row_no from first_deliveries)
