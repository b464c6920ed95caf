-- Helpers over the JSON texts json_extract returns (compact: a string starts with '"').
create or replace temp macro json_missing(j) as j is null or j = 'null';

create or replace temp macro json_text(j) as
    case when starts_with(j, '"') then j::json ->> '$' end;

-- A JSON number as DOUBLE; NULL for strings, booleans, objects and arrays.
create or replace temp macro json_number(j) as
    case when not starts_with(j, '"') then try_cast(j as double) end;

-- ISO-8601 text (date, time, optional fraction, optional Z or offset; naive is read in the
-- session time zone, UTC) as TIMESTAMPTZ, else NULL. DuckDB's cast alone accepts more.
create or replace temp macro iso_timestamptz(t) as
    case
        when regexp_full_match(
            t,
            '\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}(:?\d{2})?)?'
        ) then try_cast(t as timestamptz)
    end;
