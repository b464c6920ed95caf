-- Rejected lines with where they came from and why. Parameters: $ingested_at, $source_day.
with

rejected as (
    select
        row_no,
        source_key,
        line_number,
        raw_line,
        reason
    from parsed
    where reason is not null
)

select
    source_key,
    line_number,
    raw_line,
    reason,
    $ingested_at::timestamptz as ingested_at,
    $source_day::date as source_day
from rejected
order by row_no
