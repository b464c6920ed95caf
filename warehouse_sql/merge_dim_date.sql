-- Upsert calendar days from staging; unchanged rows are left alone.
insert into warehouse.dim_date as target (
    date_key,
    year,
    quarter,
    month,
    day,
    day_of_week,
    is_weekend
)
select
    date_key,
    year,
    quarter,
    month,
    day,
    day_of_week,
    is_weekend
from stage_dim_date
on conflict (date_key) do update set
    year = excluded.year,
    quarter = excluded.quarter,
    month = excluded.month,
    day = excluded.day,
    day_of_week = excluded.day_of_week,
    is_weekend = excluded.is_weekend
where (
    target.year,
    target.quarter,
    target.month,
    target.day,
    target.day_of_week,
    target.is_weekend
) is distinct from (
    excluded.year,
    excluded.quarter,
    excluded.month,
    excluded.day,
    excluded.day_of_week,
    excluded.is_weekend
)
