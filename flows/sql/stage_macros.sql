-- Helpers over compact JSON value texts (a string starts with '"').
create or replace temp macro json_missing(j) as j is null or j = 'null';

-- A JSON string's value; the slice is exact when there is no escape sequence.
create or replace temp macro json_text(j) as
    case
        when not starts_with(j, '"') then null
        when contains(j, '\') then j::json ->> '$'
        else j[2:-2]
    end;

-- A JSON number as DOUBLE; NULL for strings, booleans, objects and arrays.
create or replace temp macro json_number(j) as
    case when not starts_with(j, '"') then try_cast(j as double) end;

-- The shape nearly every line has, e.g. 2019-06-01T18:17:10.101Z. When such a text casts,
-- its canonical form (microseconds, Z) is the text with three more zeros. DuckDB would read
-- hour 24 as the next day; ISO-8601 parsers (and flows/tools/reference.py) reject it.
create or replace temp macro is_canonical_utc(t) as
    strlen(t) = 24 and t[11] = 'T' and t[20] = '.' and t[24] = 'Z' and t[12:13] < '24'
    and not contains(t, ' ');

-- ISO-8601 text (date, time, optional fraction, optional Z or offset; naive is read in the
-- session time zone, UTC) as TIMESTAMPTZ, else NULL. DuckDB's cast alone accepts more.
create or replace temp macro iso_timestamptz(t) as
    case
        -- the shape nearly every line has, e.g. 2019-06-01T18:17:10.101Z, skips the regex
        when is_canonical_utc(t) then try_cast(t as timestamptz)
        when regexp_full_match(
            t,
            '\d{4}-\d{2}-\d{2}[Tt ]([01]\d|2[0-3]):\d{2}:\d{2}(\.\d{1,9})?'
            || '([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?'
        ) then try_cast(t as timestamptz)
    end;
