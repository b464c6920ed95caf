-- Remove every vehicle row of the periods this load recomputed (stale vehicles included).
delete from warehouse.fact_vehicle_operating_period
where operating_period_id = any(%(period_ids)s::text[])
