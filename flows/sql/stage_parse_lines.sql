-- One row per raw line, in input order: its typed event fields with event_id and
-- is_valid_point (docs/data-model.md), or the first reason it is rejected.
-- Reads the Arrow table `lines` (row_no, source_key, line_number, line, bad_utf8); a line
-- still ends with its terminator, which JSON ignores. Rules: docs/data-model.md and
-- flows/tools/reference.py (the first rule that fails names the reason).
with

json_lines as (
    select
        row_no,
        source_key,
        line_number,
        line,
        not bad_utf8 and json_valid(line) as is_json
    from lines
),

extracted as (
    select
        *,
        -- a valid JSON text starting with '{' (after whitespace) is an object
        is_json and (starts_with(line, '{') or regexp_matches(line, '^\s*\{')) as is_object,
        is_json and regexp_matches(line, ',\s*[\]}]') as has_trailing_comma,
        -- one parse per line; fields whose JSON type matters stay JSON text, the others
        -- come as text (a number or object there fails later checks just the same)
        case when is_json then from_json(line, '{
            "event": "VARCHAR",
            "on": "VARCHAR",
            "at": "VARCHAR",
            "organization_id": "JSON",
            "data": {
                "id": "JSON",
                "vehicle_id": "JSON",
                "start": "VARCHAR",
                "finish": "VARCHAR",
                "location": {"lat": "JSON", "lng": "JSON", "at": "VARCHAR"}
            }
        }') end as doc
    from json_lines
),

scalars as (
    select
        row_no,
        source_key,
        line_number,
        line,
        is_json,
        is_object,
        has_trailing_comma,
        doc.event as event_text,
        doc.on as on_text,
        doc.at as at_text,
        doc.data.id::varchar as j_id,
        doc.data.vehicle_id::varchar as j_vehicle_id,
        doc.organization_id::varchar as j_organization_id,
        doc.data.location.lat::varchar as j_lat,
        doc.data.location.lng::varchar as j_lng,
        doc.data.location.at as location_at_text,
        doc.data.start as start_text,
        doc.data.finish as finish_text,
        json_text(j_id) as id_text,
        json_text(j_vehicle_id) as vehicle_id_text,
        json_text(j_organization_id) as org_text,
        json_number(j_lat) as lat_number,
        json_number(j_lng) as lng_number
    from extracted
),

entities as (
    select
        *,
        on_text = 'vehicle' as is_vehicle,
        on_text = 'break' as is_break,
        -- a break is shaped like an operating period (plus its vehicle): it has bounds too
        on_text in ('operating_period', 'break') as is_period,
        (on_text = 'vehicle' and event_text in ('register', 'update', 'deregister'))
        or (on_text in ('operating_period', 'break') and event_text in ('create', 'delete'))
        as is_known_event
    from scalars
),

timestamps as (
    select
        *,
        iso_timestamptz(at_text) as at_ts
    from entities
),

all_timestamps as (
    select
        *,
        case
            when not is_vehicle then null
            when location_at_text = at_text then at_ts
            else iso_timestamptz(location_at_text)
        end as location_at_ts,
        case when is_period then iso_timestamptz(start_text) end as start_ts,
        case when is_period then iso_timestamptz(finish_text) end as finish_ts
    from timestamps
),

locations as (
    select
        *,
        -- read only when lat, lng and at are all absent: location may then be a non-object
        case
            when is_vehicle and j_lat is null and j_lng is null and location_at_text is null
                then json_extract(line, '$.data.location')::varchar
        end as j_location
    from all_timestamps
),

classified as (
    select
        *,
        case
            when not is_json and regexp_full_match(line, '[\t\n\x0b\x0c\r\x1c-\x1f\x85\pZ]*')
                then 'empty_line'  -- exactly what Python's str.strip() removes
            when not is_json then 'invalid_json'
            when not is_object then 'not_an_object'
            when event_text is null then 'missing_field:event'
            when on_text is null then 'missing_field:on'
            when at_text is null then 'missing_field:at'
            when j_id is null then 'missing_field:data.id'
            when j_organization_id is null then 'missing_field:organization_id'
            when not coalesce(is_vehicle or is_period, false) then 'unknown_entity'
            when not coalesce(is_known_event, false) then 'unknown_event'
            -- every break line names its vehicle and bounds (docs/data-model.md)
            when is_break and j_vehicle_id is null then 'missing_field:data.vehicle_id'
            when (is_break or event_text = 'create') and is_period and start_text is null
                then 'missing_field:data.start'
            when (is_break or event_text = 'create') and is_period and finish_text is null
                then 'missing_field:data.finish'
            when id_text is null then 'invalid_type:data.id'
            when is_break and vehicle_id_text is null then 'invalid_type:data.vehicle_id'
            when org_text is null then 'invalid_type:organization_id'
            when not json_missing(j_location) and not starts_with(j_location, '{')
                then 'invalid_type:data.location'
            when is_vehicle and j_lat is not null and lat_number is null
                then 'invalid_type:lat'
            when is_vehicle and j_lng is not null and lng_number is null
                then 'invalid_type:lng'
            when at_ts is null then 'invalid_timestamp:at'
            when is_vehicle and location_at_text is not null and location_at_ts is null
                then 'invalid_timestamp:data.location.at'
            when is_period and start_text is not null and start_ts is null
                then 'invalid_timestamp:data.start'
            when is_period and finish_text is not null and finish_ts is null
                then 'invalid_timestamp:data.finish'
            when not year(at_ts) between 2000 and 2099
                then 'timestamp_out_of_range:at'
            when not year(location_at_ts) between 2000 and 2099
                then 'timestamp_out_of_range:data.location.at'
            when not year(start_ts) between 2000 and 2099
                then 'timestamp_out_of_range:data.start'
            when not year(finish_ts) between 2000 and 2099
                then 'timestamp_out_of_range:data.finish'
        end as reason
    from locations
),

-- DuckDB's JSON reader accepts NaN, Infinity and trailing commas, which JSON does not. Lines
-- that may hold them are flagged for a strict recheck in Python: a rejected line when it
-- mentions nan or inf anywhere (its reason must then be invalid_json), an accepted line only
-- through its coordinates (scanning every line for them costs too much).
flagged as (
    select
        *,
        case
            when has_trailing_comma then true
            when reason is null
                then not coalesce(isfinite(lat_number) and isfinite(lng_number), true)
            when not is_json then false
            else regexp_matches(line, '(?i)nan|inf')
        end as is_lenient
    from classified
),

typed_lines as (
    select
        row_no,
        source_key,
        line_number,
        reason,
        is_lenient,
        case
            when reason is not null or is_lenient then regexp_replace(line, '\r?\n?$', '')
        end as raw_line,
        event_text as event,
        on_text as "on",
        at_ts as "at",
        id_text as entity_id,
        org_text as organization_id,
        case when is_vehicle then lat_number end as lat,
        case when is_vehicle then lng_number end as lng,
        location_at_ts as location_at,
        start_ts as period_start,
        finish_ts as period_finish,
        case when is_break then vehicle_id_text end as break_vehicle_id,
        at_text
    from flagged
),

iso_texts as (
    select
        *,
        case
            when is_canonical_utc(at_text) then left(at_text, 23) || '000Z'
            else strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ')
        end as at_iso,
        case
            when location_at = "at" then at_iso
            else strftime(location_at, '%Y-%m-%dT%H:%M:%S.%fZ')
        end as location_at_iso
    from typed_lines
)

select
    row_no,
    source_key,
    line_number,
    reason,
    is_lenient,
    raw_line,
    case when reason is null then md5(concat(
        event, '|',
        "on", '|',
        at_iso, '|',
        entity_id, '|',
        organization_id, '|',
        lat::varchar, '|',
        lng::varchar, '|',
        location_at_iso, '|',
        strftime(period_start, '%Y-%m-%dT%H:%M:%S.%fZ'), '|',
        strftime(period_finish, '%Y-%m-%dT%H:%M:%S.%fZ'),
        -- only breaks carry a vehicle id: other events keep the id they always had
        '|' || break_vehicle_id
    )) end as event_id,
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
    coalesce(
        "on" = 'vehicle'
        and event = 'update'
        and location_at is not null
        and lat between -90 and 90
        and lng between -180 and 180
        and not (lat = 0 and lng = 0),
        false
    ) as is_valid_point,
    "at"::date as event_date,
    false as is_duplicate
from iso_texts
