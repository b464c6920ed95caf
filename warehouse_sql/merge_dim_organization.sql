-- Upsert organizations from staging; unchanged rows are left alone.
insert into warehouse.dim_organization as target (
    organization_id,
    first_seen_at,
    last_seen_at,
    vehicles
)
select
    organization_id,
    first_seen_at,
    last_seen_at,
    vehicles
from stage_dim_organization
on conflict (organization_id) do update set
    first_seen_at = excluded.first_seen_at,
    last_seen_at = excluded.last_seen_at,
    vehicles = excluded.vehicles
where (target.first_seen_at, target.last_seen_at, target.vehicles)
    is distinct from (excluded.first_seen_at, excluded.last_seen_at, excluded.vehicles)
