-- The BI answer: average and total vehicle distance per live operating period; a live period
-- without vehicles shows 0 vehicles, a NULL average and a 0 total.
with live_periods as (
    select *
    from fact_operating_period
    where not is_deleted
),

vehicle_distances as (
    select * from fact_vehicle_operating_period
),

per_period as (
    select
        operating_period_id,
        count(*) as vehicles,
        avg(distance_km) as avg_distance_km,
        sum(distance_km) as total_distance_km
    from vehicle_distances
    group by operating_period_id
),

final as (
    select
        p.operating_period_id,
        p.organization_id,
        p.start_at,
        p.finish_at,
        coalesce(v.vehicles, 0) as vehicles,
        v.avg_distance_km,
        coalesce(v.total_distance_km, 0.0) as total_distance_km
    from live_periods as p
    left join per_period as v using (operating_period_id)
)

select * from final
order by start_at, operating_period_id
