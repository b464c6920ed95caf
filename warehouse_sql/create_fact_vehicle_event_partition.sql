-- A bare table for one event date's rows (see migration 004); returns its name.
select warehouse.create_fact_vehicle_event_partition(%s::date, %s::text)
