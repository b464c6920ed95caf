-- Accepted lines as typed events: the first delivery of each distinct event within the
-- source day (lowest row_no: source key, then line number), with event_id and
-- is_valid_point as docs/data-model.md defines them. Parameters: $ingested_at, $source_day.
with

accepted as (
    select *
    from parsed
    where reason is null
),

iso_texts as (
    select
        *,
        strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') as at_iso,
        case
            when location_at = "at" then at_iso
            else strftime(location_at, '%Y-%m-%dT%H:%M:%S.%fZ')
        end as location_at_iso
    from accepted
),

identified as (
    select
        *,
        md5(concat(
            event, '|',
            "on", '|',
            at_iso, '|',
            entity_id, '|',
            organization_id, '|',
            lat::varchar, '|',
            lng::varchar, '|',
            location_at_iso, '|',
            strftime(period_start, '%Y-%m-%dT%H:%M:%S.%fZ'), '|',
            strftime(period_finish, '%Y-%m-%dT%H:%M:%S.%fZ')
        )) as event_id
    from iso_texts
),

first_deliveries as (
    select *
    from identified
    qualify row_number() over (partition by event_id order by row_no) = 1
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
from first_deliveries
