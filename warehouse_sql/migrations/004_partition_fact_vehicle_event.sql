-- fact_vehicle_event becomes partitioned by range (event_date), one partition per day, so a
-- load replaces a day by partition exchange: COPY into a bare table, build its indexes and
-- check its foreign keys in bulk, then swap it in (per-row index and FK work cost ~15 s of
-- CPU per 1M events). Same name, columns, CHECKs, indexes and foreign keys as before; the
-- primary key must hold the partition key, so it is (event_id, event_date). event_id is the
-- md5 of the event's content including at, and event_date is the UTC date of at, so this is
-- as strict as event_id alone for events made by the stage.
-- Day partitions are named fact_vehicle_event_<yyyymmdd>_<tag>; rows of a day with no
-- partition (direct inserts) land in fact_vehicle_event_default.
alter table warehouse.fact_vehicle_event rename to fact_vehicle_event_unpartitioned;

create table warehouse.fact_vehicle_event (
    event_id text not null,
    vehicle_id text not null,
    organization_id text not null,
    event text not null
        constraint fact_vehicle_event_event_check
        check (event in ('register', 'update', 'deregister')),
    at timestamptz not null,
    lat double precision,
    lng double precision,
    location_at timestamptz,
    is_valid_point boolean not null,
    event_date date not null,
    -- Named as in 001: the old table still holds those names while this one is created.
    constraint fact_vehicle_event_check check (event_date = (at at time zone 'UTC')::date)
) partition by range (event_date);

create table warehouse.fact_vehicle_event_default
partition of warehouse.fact_vehicle_event default;

do $$
declare
    day date;
begin
    for day in
        select distinct event_date
        from warehouse.fact_vehicle_event_unpartitioned
    loop
        execute format(
            'create table warehouse.%I partition of warehouse.fact_vehicle_event '
            'for values from (%L) to (%L)',
            'fact_vehicle_event_' || to_char(day, 'YYYYMMDD') || '_m004',
            day,
            day + 1
        );
    end loop;
end
$$;

insert into warehouse.fact_vehicle_event (
    event_id,
    vehicle_id,
    organization_id,
    event,
    at,
    lat,
    lng,
    location_at,
    is_valid_point,
    event_date
)
select
    event_id,
    vehicle_id,
    organization_id,
    event,
    at,
    lat,
    lng,
    location_at,
    is_valid_point,
    event_date
from warehouse.fact_vehicle_event_unpartitioned;

drop table warehouse.fact_vehicle_event_unpartitioned;

alter table warehouse.fact_vehicle_event
add constraint fact_vehicle_event_pkey primary key (event_id, event_date);

alter table warehouse.fact_vehicle_event
add constraint fact_vehicle_event_vehicle_id_fkey
foreign key (vehicle_id) references warehouse.dim_vehicle (vehicle_id);

alter table warehouse.fact_vehicle_event
add constraint fact_vehicle_event_event_date_fkey
foreign key (event_date) references warehouse.dim_date (date_key);

create index fact_vehicle_event_vehicle_location_idx
    on warehouse.fact_vehicle_event (vehicle_id, location_at);

create index fact_vehicle_event_event_date_idx
    on warehouse.fact_vehicle_event (event_date);

-- Partition exchange needs the table owner's rights (create, attach, detach, drop), which the
-- loader must not hold. These two SECURITY DEFINER functions are the only way it gets them:
-- they touch nothing but fact_vehicle_event day partitions, and only for a caller whose
-- login may already insert and delete its rows (a restore without privileges re-opens
-- EXECUTE to PUBLIC; this check still keeps analysts out).
create function warehouse.create_fact_vehicle_event_partition(event_day date, tag text)
returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    made text := 'fact_vehicle_event_' || to_char(event_day, 'YYYYMMDD') || '_' || tag;
begin
    if not has_table_privilege(session_user, 'warehouse.fact_vehicle_event', 'insert, delete') then
        raise exception 'role % may not replace fact_vehicle_event partitions', session_user
            using errcode = 'insufficient_privilege';
    end if;
    if event_day is null or tag is null or tag !~ '^[a-z0-9]{1,12}$' then
        raise exception 'partition tag must be 1-12 lowercase letters or digits, got %', tag;
    end if;
    execute format(
        'create table warehouse.%I (like warehouse.fact_vehicle_event including defaults '
        'including constraints, constraint in_partition_day check (event_date = %L::date))',
        made,
        event_day
    );
    -- The caller COPYs into it; exchange_fact_vehicle_event_partition takes this back.
    if session_user <> current_user then
        execute format('grant insert on warehouse.%I to %I', made, session_user);
    end if;
    if exists (select 1 from pg_roles where rolname = 'vdp_loader') then
        execute format('grant insert on warehouse.%I to vdp_loader', made);
    end if;
    return made;
end
$$;

create function warehouse.exchange_fact_vehicle_event_partition(event_day date, new_table text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    day_text text := to_char(event_day, 'YYYYMMDD');
    old_table text;
begin
    if not has_table_privilege(session_user, 'warehouse.fact_vehicle_event', 'insert, delete') then
        raise exception 'role % may not replace fact_vehicle_event partitions', session_user
            using errcode = 'insufficient_privilege';
    end if;
    if new_table is null or new_table !~ ('^fact_vehicle_event_' || day_text || '_[a-z0-9]{1,12}$')
        or not exists (
            select 1
            from pg_class
            where relnamespace = 'warehouse'::regnamespace
                and relname = new_table
                and relkind = 'r'
                and not relispartition
                and relowner = (select oid from pg_roles where rolname = current_user)
        ) then
        raise exception '% is not a table made by create_fact_vehicle_event_partition for %',
            new_table, event_day;
    end if;
    if session_user <> current_user then
        execute format('revoke insert on warehouse.%I from %I', new_table, session_user);
    end if;
    if exists (select 1 from pg_roles where rolname = 'vdp_loader') then
        execute format('revoke insert on warehouse.%I from vdp_loader', new_table);
    end if;
    -- Built here in bulk, so ATTACH adopts them instead of building under the parent's lock.
    execute format(
        'alter table warehouse.%I add constraint %I primary key (event_id, event_date)',
        new_table,
        'fact_vehicle_event_pkey_' || substr(new_table, 20)
    );
    execute format(
        'create index %I on warehouse.%I (vehicle_id, location_at)',
        new_table || '_vehicle_location_idx',
        new_table
    );
    execute format('create index %I on warehouse.%I (event_date)', new_table || '_date_idx', new_table);
    execute format(
        'alter table warehouse.%I add constraint fact_vehicle_event_vehicle_id_fkey '
        'foreign key (vehicle_id) references warehouse.dim_vehicle (vehicle_id)',
        new_table
    );
    execute format(
        'alter table warehouse.%I add constraint fact_vehicle_event_event_date_fkey '
        'foreign key (event_date) references warehouse.dim_date (date_key)',
        new_table
    );
    for old_table in
        select child.relname
        from pg_inherits
        inner join pg_class as child on pg_inherits.inhrelid = child.oid
        where pg_inherits.inhparent = 'warehouse.fact_vehicle_event'::regclass
            and child.relname like 'fact_vehicle_event\_' || day_text || '\_%'
    loop
        execute format(
            'alter table warehouse.fact_vehicle_event detach partition warehouse.%I', old_table
        );
        execute format('drop table warehouse.%I', old_table);
    end loop;
    delete from warehouse.fact_vehicle_event_default where event_date = event_day;
    execute format(
        'alter table warehouse.fact_vehicle_event attach partition warehouse.%I '
        'for values from (%L) to (%L)',
        new_table,
        event_day,
        event_day + 1
    );
end
$$;

revoke all on function warehouse.create_fact_vehicle_event_partition(date, text) from public;
revoke all on function warehouse.exchange_fact_vehicle_event_partition(date, text) from public;

-- The table is new, so its grants (migration 003) are given again.
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'vdp_analyst') then
        grant select on warehouse.fact_vehicle_event, warehouse.fact_vehicle_event_default
        to vdp_analyst;
    end if;
    if exists (select 1 from pg_roles where rolname = 'vdp_loader') then
        grant select, insert, update, delete on warehouse.fact_vehicle_event to vdp_loader;
        grant execute on function
            warehouse.create_fact_vehicle_event_partition(date, text),
            warehouse.exchange_fact_vehicle_event_partition(date, text)
        to vdp_loader;
    end if;
end
$$;
