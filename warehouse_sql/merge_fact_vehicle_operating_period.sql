-- Insert the recomputed vehicle rows of this load's periods (after delete_fact_vehicle_operating_period.sql).
insert into warehouse.fact_vehicle_operating_period (
    operating_period_id,
    vehicle_id,
    organization_id,
    distance_km,
    break_distance_km,
    location_points,
    first_location_at,
    last_location_at
)
select
    operating_period_id,
    vehicle_id,
    organization_id,
    distance_km,
    break_distance_km,
    location_points,
    first_location_at,
    last_location_at
from stage_fact_vehicle_operating_period
where operating_period_id = any(%(period_ids)s::text[])
