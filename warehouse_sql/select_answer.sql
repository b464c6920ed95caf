-- The BI answer for `vdp report`: live periods, optionally those overlapping one UTC day.
with

answer as (
    select
        operating_period_id,
        organization_id,
        start_at,
        finish_at,
        vehicles,
        avg_distance_km,
        total_distance_km
    from warehouse.avg_distance_per_operating_period
),

filtered as (
    select *
    from answer
    where
        %(day)s::date is null
        or (
            start_at < (%(day)s::date + 1)::timestamp at time zone 'UTC'
            and finish_at >= %(day)s::date::timestamp at time zone 'UTC'
        )
)

select
    operating_period_id,
    organization_id,
    start_at,
    finish_at,
    vehicles,
    avg_distance_km,
    total_distance_km
from filtered
order by start_at, operating_period_id
