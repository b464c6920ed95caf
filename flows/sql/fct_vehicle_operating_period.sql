-- Distance per vehicle and period: haversine over consecutive points by location_at, for the
-- recomputed periods; a leg that a live break of the vehicle (same organization) touches
-- (break start <= leg end and break finish >= leg start) counts as break distance instead.
-- The published rows of every other still existing period of the partitions being rewritten
-- are kept. period_date (the period's start date) names the partition a row is written to
-- and is not a column of the table.
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

breaks as (
    select vehicle_id, organization_id, start_at, finish_at
    from fact_break
    where not is_deleted
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
        lag(lng) over vehicle_track as previous_lng,
        lag(location_at) over vehicle_track as previous_location_at
    from period_points
    window vehicle_track as (
        partition by operating_period_id, vehicle_id
        order by location_at
    )
),

classified_legs as (
    select
        l.*,
        haversine_km(l.previous_lat, l.previous_lng, l.lat, l.lng) as leg_km,
        exists (
            select 1 from breaks as b
            where b.vehicle_id = l.vehicle_id
                and b.organization_id = l.organization_id
                and b.start_at <= l.location_at
                and b.finish_at >= l.previous_location_at
        ) as is_break_leg
    from legs as l
),

computed as (
    select
        operating_period_id,
        vehicle_id,
        any_value(organization_id) as organization_id,
        -- a left-out leg adds 0.0, which keeps the sum's bits of the legs that count
        coalesce(
            sum(case when is_break_leg then 0.0 else leg_km end order by location_at), 0.0
        ) as distance_km,
        coalesce(
            sum(case when is_break_leg then leg_km else 0.0 end order by location_at), 0.0
        ) as break_distance_km,
        count(*) as location_points,
        min(location_at) as first_location_at,
        max(location_at) as last_location_at
    from classified_legs
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
    f.break_distance_km,
    f.location_points,
    f.first_location_at,
    f.last_location_at,
    p.start_at::date as period_date
from final as f
inner join fact_operating_period as p using (operating_period_id)
order by f.operating_period_id, f.vehicle_id
