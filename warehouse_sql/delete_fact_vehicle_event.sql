-- Remove every vehicle event of the event dates this load replaces.
delete from warehouse.fact_vehicle_event
where event_date = any(%(event_dates)s::date[])
