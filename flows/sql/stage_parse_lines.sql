-- One row per raw line, in input order: its typed event fields, or the first reason it is
-- rejected. Reads the Arrow table `lines` (row_no, source_key, line_number, line, bad_utf8);
-- a line still ends with its terminator, which JSON ignores.
with

json_lines as (
    select
        row_no,
        source_key,
        line_number,
        line,
        -- exactly the characters Python's str.strip() removes
        regexp_full_match(line, '[\t\n\x0b\x0c\r\x1c-\x1f\x85\pZ]*') as is_blank,
        not bad_utf8 and json_valid(line) as is_json
    from lines
),

extracted as (
    select
        *,
        is_json and regexp_matches(line, '^\s*\{') as is_object,
        -- json_valid also accepts NaN/Infinity and trailing commas: recheck those strictly
        is_json and regexp_matches(line, '[:\[,]\s*[-+]?(?i:nan|inf)|,\s*[\]}]') as is_lenient,
        case when is_json then json_extract(line, [
            '$.event',
            '$.on',
            '$.at',
            '$.data.id',
            '$.organization_id',
            '$.data.location.lat',
            '$.data.location.lng',
            '$.data.location.at',
            '$.data.start',
            '$.data.finish',
            '$.data.location'
        ])::varchar[] end as j
    from json_lines
),

json_fields as (
    select
        row_no,
        source_key,
        line_number,
        line,
        is_blank,
        is_json,
        is_object,
        is_lenient,
        j[1] as j_event,
        j[2] as j_on,
        j[3] as j_at,
        j[4] as j_id,
        j[5] as j_organization_id,
        j[6] as j_lat,
        j[7] as j_lng,
        j[8] as j_location_at,
        j[9] as j_start,
        j[10] as j_finish,
        j[11] as j_location
    from extracted
),

scalars as (
    select
        *,
        json_text(j_event) as event_text,
        json_text(j_on) as on_text,
        json_text(j_at) as at_text,
        json_text(j_id) as id_text,
        json_text(j_organization_id) as org_text,
        json_number(j_lat) as lat_number,
        json_number(j_lng) as lng_number,
        json_text(j_location_at) as location_at_text,
        json_text(j_start) as start_text,
        json_text(j_finish) as finish_text
    from json_fields
),

entities as (
    select
        *,
        on_text = 'vehicle' as is_vehicle,
        on_text = 'operating_period' as is_period,
        (on_text = 'vehicle' and event_text in ('register', 'update', 'deregister'))
        or (on_text = 'operating_period' and event_text in ('create', 'delete')) as is_known_event
    from scalars
),

timestamps as (
    select
        *,
        iso_timestamptz(at_text) as at_ts,
        case when is_vehicle then iso_timestamptz(location_at_text) end as location_at_ts,
        case when is_period then iso_timestamptz(start_text) end as start_ts,
        case when is_period then iso_timestamptz(finish_text) end as finish_ts
    from entities
),

classified as (
    select
        *,
        case
            when is_blank then 'empty_line'
            when not is_json then 'invalid_json'
            when not is_object then 'not_an_object'
            when json_missing(j_event) then 'missing_field:event'
            when json_missing(j_on) then 'missing_field:on'
            when json_missing(j_at) then 'missing_field:at'
            when json_missing(j_id) then 'missing_field:data.id'
            when json_missing(j_organization_id) then 'missing_field:organization_id'
            when is_period and event_text = 'create' and json_missing(j_start)
                then 'missing_field:data.start'
            when is_period and event_text = 'create' and json_missing(j_finish)
                then 'missing_field:data.finish'
            when not coalesce(is_vehicle or is_period, false) then 'unknown_entity'
            when not coalesce(is_known_event, false) then 'unknown_event'
            when id_text is null then 'invalid_type:data.id'
            when org_text is null then 'invalid_type:organization_id'
            when is_vehicle and not json_missing(j_location) and not starts_with(j_location, '{')
                then 'invalid_type:data.location'
            when is_vehicle and not json_missing(j_lat) and lat_number is null
                then 'invalid_type:lat'
            when is_vehicle and not json_missing(j_lng) and lng_number is null
                then 'invalid_type:lng'
            when at_ts is null then 'invalid_timestamp:at'
            when is_vehicle and not json_missing(j_location_at) and location_at_ts is null
                then 'invalid_timestamp:data.location.at'
            when is_period and not json_missing(j_start) and start_ts is null
                then 'invalid_timestamp:data.start'
            when is_period and not json_missing(j_finish) and finish_ts is null
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
    from timestamps
)

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
    finish_ts as period_finish
from classified
