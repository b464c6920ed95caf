-- Every distinct operating-period event of the lake: the published state minus the event dates
-- this run touched, plus those dates' events as they are now (an event's date never changes,
-- so a re-delivery always lands in the same date and counts once).
with kept as (
    select *
    from previous_period_events
    where event_date not in (select event_date from touched_dates)
),

touched as (
    select
        entity_id as operating_period_id,
        event,
        "at",
        organization_id,
        period_start,
        period_finish,
        event_id,
        event_date
    from events
    where "on" = 'operating_period'
        and event in ('create', 'delete')
),

final as (
    select * from kept
    union all by name
    select * from touched
)

select * from final
order by event_date, operating_period_id, "at", event_id
