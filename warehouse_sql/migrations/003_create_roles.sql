-- Roles: vdp_analyst reads the warehouse (NOLOGIN group role: grant it to analyst logins);
-- vdp_loader holds just the DML the loader needs. Roles are created only when the connecting
-- user may create roles; grants are given whenever the roles exist (e.g. made by a DBA).
do $$
declare
    may_create_roles boolean;
begin
    select rolcreaterole or rolsuper
    into may_create_roles
    from pg_roles
    where rolname = current_user;

    if may_create_roles then
        begin
            create role vdp_analyst nologin;
        exception when duplicate_object or unique_violation then
            null;
        end;
        begin
            create role vdp_loader nologin;
        exception when duplicate_object or unique_violation then
            null;
        end;
    end if;

    if exists (select 1 from pg_roles where rolname = 'vdp_analyst') then
        grant usage on schema warehouse to vdp_analyst;
        grant select on all tables in schema warehouse to vdp_analyst;
        alter default privileges in schema warehouse grant select on tables to vdp_analyst;
    end if;

    if exists (select 1 from pg_roles where rolname = 'vdp_loader') then
        execute format('grant connect, temporary on database %I to vdp_loader', current_database());
        grant usage on schema warehouse to vdp_loader;
        grant select, insert, update, delete on
            warehouse.dim_organization,
            warehouse.dim_vehicle,
            warehouse.dim_date,
            warehouse.fact_operating_period,
            warehouse.fact_vehicle_operating_period,
            warehouse.fact_vehicle_event
        to vdp_loader;
        grant select, insert on warehouse.load_audit to vdp_loader;
        grant select on warehouse.schema_migrations to vdp_loader;
        grant select on warehouse.avg_distance_per_operating_period to vdp_loader;
    end if;
end
$$;
