-- The BI answer for `vdp report`: live periods, optionally those overlapping one UTC day, with
-- beside the distance the break distance left out of it.
with

break_distances as (
    select
        operating_period_id,
        sum(break_distance_km) as total_break_distance_km
    from warehouse.fact_vehicle_operating_period
    group by operating_period_id
),

answer as (
    select
        operating_period_id,
        organization_id,
        start_at,
        finish_at,
        vehicles,
        avg_distance_km,
        total_distance_km,
        coalesce(b.total_break_distance_km, 0.0) as total_break_distance_km
    from warehouse.avg_distance_per_operating_period
    left join break_distances as b using (operating_period_id)
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
    total_distance_km,
    total_break_distance_km
from filtered
order by start_at, operating_period_id
