-- Valid location points inside any recomputed period's window, counted once per
-- (vehicle, location_at): earliest at, then lowest lat, lng, organization is kept.
-- candidate_points holds the points state of the location dates the windows span.
with windows as (
    select p.start_at, p.finish_at
    from fact_operating_period as p
    semi join recomputed_periods as r using (operating_period_id)
),

candidates as (
    select
        e.vehicle_id,
        e.organization_id,
        e.location_at,
        e."at",
        e.lat,
        e.lng
    from candidate_points as e
    where e.location_at between (select min(start_at) from windows)
        and (select max(finish_at) from windows)
        and exists (
            select 1 from windows as w
            where e.location_at between w.start_at and w.finish_at
        )
),

deduplicated as (
    select *
    from candidates
    qualify row_number() over (
        partition by vehicle_id, location_at
        order by "at", lat, lng, organization_id
    ) = 1
)

select * from deduplicated
