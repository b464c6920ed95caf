-- One row per (event date, entity kind, entity, organization): what the dimensions need of the
-- events, so they are rebuilt from a few rows a vehicle and day instead of from every event.
-- The published rows of untouched dates are kept; touched dates are summarized again.
with kept as (
    select *
    from previous_entity_dates
    where event_date not in (select event_date from touched_dates)
),

touched as (
    select
        event_date,
        "on",
        entity_id,
        organization_id,
        min("at") over entity_day as first_at,
        max("at") over entity_day as last_at,
        min(case when event = 'register' then "at" end) over entity_day as registered_at,
        max(case when event = 'deregister' then "at" end) over entity_day as deregistered_at,
        count(*) over entity_day as events,
        event_id as last_event_id
    from events
    window entity_day as (partition by event_date, "on", entity_id, organization_id)
    qualify row_number() over (
        partition by event_date, "on", entity_id, organization_id
        order by "at" desc, event_id
    ) = 1
),

final as (
    select * from kept
    union all by name
    select * from touched
)

select * from final
order by event_date, "on", entity_id, organization_id
