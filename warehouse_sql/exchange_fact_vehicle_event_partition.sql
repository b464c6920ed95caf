-- Index, FK-check and swap in a table made by create_fact_vehicle_event_partition.sql.
select warehouse.exchange_fact_vehicle_event_partition(%s::date, %s::text)
