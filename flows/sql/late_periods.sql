-- Of the periods a run recomputed, those that the late source days' events reach: one of the
-- period's own events, a valid point inside the period's window of a vehicle that has a row
-- in it, or a break event of its organization whose bounds overlap its window. Reporting only (the run's summary); the transform decides what to recompute.
with

late_events as (
    select * from late_events
),

periods as (
    select operating_period_id, organization_id, start_at, finish_at
    from fact_operating_period
    where operating_period_id in (select operating_period_id from recomputed)
),

vehicle_rows as (
    select operating_period_id, vehicle_id from changed_vehicle_periods
),

by_period_event as (
    select distinct periods.operating_period_id
    from late_events
    inner join periods on late_events.entity_id = periods.operating_period_id
    where late_events.on = 'operating_period'
),

by_point as (
    select distinct periods.operating_period_id
    from late_events
    inner join vehicle_rows on late_events.entity_id = vehicle_rows.vehicle_id
    inner join periods
        on vehicle_rows.operating_period_id = periods.operating_period_id
        and late_events.organization_id = periods.organization_id
        and late_events.location_at between periods.start_at and periods.finish_at
    where late_events.on = 'vehicle' and late_events.is_valid_point
),

by_break as (
    select distinct periods.operating_period_id
    from late_events
    inner join periods
        on late_events.organization_id = periods.organization_id
        and late_events.period_start <= periods.finish_at
        and late_events.period_finish >= periods.start_at
    where late_events.on = 'break'
),

final as (
    select operating_period_id from by_period_event
    union
    select operating_period_id from by_point
    union
    select operating_period_id from by_break
)

select * from final
order by operating_period_id
