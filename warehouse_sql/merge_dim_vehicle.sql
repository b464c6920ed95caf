-- Upsert vehicles from staging; unchanged rows are left alone.
insert into warehouse.dim_vehicle as target (
    vehicle_id,
    organization_id,
    first_seen_at,
    last_seen_at,
    registered_at,
    deregistered_at,
    events
)
select
    vehicle_id,
    organization_id,
    first_seen_at,
    last_seen_at,
    registered_at,
    deregistered_at,
    events
from stage_dim_vehicle
on conflict (vehicle_id) do update set
    organization_id = excluded.organization_id,
    first_seen_at = excluded.first_seen_at,
    last_seen_at = excluded.last_seen_at,
    registered_at = excluded.registered_at,
    deregistered_at = excluded.deregistered_at,
    events = excluded.events
where (
    target.organization_id,
    target.first_seen_at,
    target.last_seen_at,
    target.registered_at,
    target.deregistered_at,
    target.events
) is distinct from (
    excluded.organization_id,
    excluded.first_seen_at,
    excluded.last_seen_at,
    excluded.registered_at,
    excluded.deregistered_at,
    excluded.events
)
