-- Drivers' breaks (DESIGN.md "Breaks"): one row per break, live or deleted, and the distance a
-- vehicle drove during live breaks beside the distance that counts. Rows loaded before this
-- migration had no breaks to leave out, so 0 is their exact break distance. The answer view
-- keeps its columns: it averages distance_km, which already excludes break legs.
create table warehouse.fact_break (
    break_id text primary key,
    vehicle_id text,
    organization_id text,
    start_at timestamptz,
    finish_at timestamptz,
    is_deleted boolean not null,
    created_at timestamptz,
    updated_at timestamptz
);

create index fact_break_vehicle_idx
    on warehouse.fact_break (vehicle_id, start_at)
    where not is_deleted;

alter table warehouse.fact_vehicle_operating_period
    add column break_distance_km double precision not null default 0
        check (break_distance_km >= 0);

-- The loader upserts breaks like periods (analysts read it through 003's default privileges).
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'vdp_loader') then
        grant select, insert, update, delete on warehouse.fact_break to vdp_loader;
    end if;
end
$$;
