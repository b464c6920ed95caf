-- Distance per vehicle and period: haversine over consecutive points by location_at, for the
-- recomputed periods; the published rows of every other still existing period of the
-- partitions being rewritten are kept. period_date (the period's start date) names the
-- partition a row is written to and is not a column of the table.
-- The sum is ordered so a re-run adds the legs in the same order and gives the same bits.
with periods as (
    select
        p.operating_period_id,
        p.organization_id,
        p.start_at,
        p.finish_at
    from fact_operating_period as p
    semi join recomputed_periods as r using (operating_period_id)
),

points as (
    select * from location_points
),

published as (
    select * from published_vehicle_operating_period
),

period_points as (
    select
        p.operating_period_id,
        pt.vehicle_id,
        p.organization_id,
        pt.location_at,
        pt.lat,
        pt.lng
    from periods as p
    inner join points as pt
        on pt.organization_id = p.organization_id
        and pt.location_at between p.start_at and p.finish_at
),

legs as (
    select
        *,
        lag(lat) over vehicle_track as previous_lat,
        lag(lng) over vehicle_track as previous_lng
    from period_points
    window vehicle_track as (
        partition by operating_period_id, vehicle_id
        order by location_at
    )
),

computed as (
    select
        operating_period_id,
        vehicle_id,
        any_value(organization_id) as organization_id,
        coalesce(
            sum(haversine_km(previous_lat, previous_lng, lat, lng) order by location_at), 0.0
        ) as distance_km,
        count(*) as location_points,
        min(location_at) as first_location_at,
        max(location_at) as last_location_at
    from legs
    group by operating_period_id, vehicle_id
),

kept as (
    select *
    from published
    where operating_period_id in (select operating_period_id from fact_operating_period)
        and operating_period_id not in (select operating_period_id from recomputed_periods)
),

final as (
    select * from kept
    union all by name
    select * from computed
)

select
    f.operating_period_id,
    f.vehicle_id,
    f.organization_id,
    f.distance_km,
    f.location_points,
    f.first_location_at,
    f.last_location_at,
    p.start_at::date as period_date
from final as f
inner join fact_operating_period as p using (operating_period_id)
order by f.operating_period_id, f.vehicle_id
