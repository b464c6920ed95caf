-- The BI answer: average and total vehicle distance per live operating period.
-- A live period without vehicles shows vehicles = 0, avg NULL, total 0.
create view warehouse.avg_distance_per_operating_period as
with

periods as (
    select
        operating_period_id,
        organization_id,
        start_at,
        finish_at
    from warehouse.fact_operating_period
    where not is_deleted
),

vehicle_periods as (
    select
        operating_period_id,
        distance_km
    from warehouse.fact_vehicle_operating_period
),

distance_per_period as (
    select
        operating_period_id,
        count(*) as vehicles,
        avg(distance_km) as avg_distance_km,
        sum(distance_km) as total_distance_km
    from vehicle_periods
    group by operating_period_id
)

select
    periods.operating_period_id,
    periods.organization_id,
    periods.start_at,
    periods.finish_at,
    coalesce(distance_per_period.vehicles, 0) as vehicles,
    distance_per_period.avg_distance_km,
    coalesce(distance_per_period.total_distance_km, 0) as total_distance_km
from periods
left join distance_per_period
    on periods.operating_period_id = distance_per_period.operating_period_id;

create index fact_operating_period_live_idx
    on warehouse.fact_operating_period (start_at, finish_at)
    where not is_deleted;
