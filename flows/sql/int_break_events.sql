-- Every distinct break event of the lake, kept like the period events: the published state
-- minus the event dates this run touched, plus those dates' break events as they are now.
with kept as (
    select *
    from previous_break_events
    where event_date not in (select event_date from touched_dates)
),

touched as (
    select
        entity_id as break_id,
        event,
        "at",
        organization_id,
        break_vehicle_id as vehicle_id,
        period_start as break_start,
        period_finish as break_finish,
        event_id,
        event_date
    from events
    where "on" = 'break'
        and event in ('create', 'delete')
),

final as (
    select * from kept
    union all by name
    select * from touched
)

select * from final
order by event_date, break_id, "at", event_id
