-- Upsert breaks from staging; unchanged rows are left alone.
insert into warehouse.fact_break as target (
    break_id,
    vehicle_id,
    organization_id,
    start_at,
    finish_at,
    is_deleted,
    created_at,
    updated_at
)
select
    break_id,
    vehicle_id,
    organization_id,
    start_at,
    finish_at,
    is_deleted,
    created_at,
    updated_at
from stage_fact_break
on conflict (break_id) do update set
    vehicle_id = excluded.vehicle_id,
    organization_id = excluded.organization_id,
    start_at = excluded.start_at,
    finish_at = excluded.finish_at,
    is_deleted = excluded.is_deleted,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at
where (
    target.vehicle_id,
    target.organization_id,
    target.start_at,
    target.finish_at,
    target.is_deleted,
    target.created_at,
    target.updated_at
) is distinct from (
    excluded.vehicle_id,
    excluded.organization_id,
    excluded.start_at,
    excluded.finish_at,
    excluded.is_deleted,
    excluded.created_at,
    excluded.updated_at
)
