-- Location times of points that this run added or removed (compared with the published state
-- of the same event dates): the periods whose window holds one must be recomputed.
with previous as (
    select vehicle_id, organization_id, location_at, "at", lat, lng from previous_points
),

current as (
    select vehicle_id, organization_id, location_at, "at", lat, lng from touched_points
),

changed as (
    (select * from previous except select * from current)
    union all
    (select * from current except select * from previous)
)

select distinct location_at from changed
