-- One row per distinct event across source days: a line re-delivered in another source
-- day's file keeps the row of the earliest source day, then the lowest source key and line.
with staged as (
    select * from staged_events
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id
            order by source_day, source_key, line_number
        ) as delivery_rank
    from staged
)

select * exclude (delivery_rank)
from ranked
where delivery_rank = 1
