-- The warehouse contract (DESIGN.md "Warehouse contract", docs/data-model.md "Curated tables").
-- Only checks that are the contract live here; everything else is the quality gate's job.
create schema if not exists warehouse;

create table warehouse.dim_organization (
    organization_id text primary key,
    first_seen_at timestamptz,
    last_seen_at timestamptz,
    vehicles bigint check (vehicles >= 0)
);

create table warehouse.dim_vehicle (
    vehicle_id text primary key,
    organization_id text,
    first_seen_at timestamptz,
    last_seen_at timestamptz,
    registered_at timestamptz,
    deregistered_at timestamptz,
    events bigint check (events >= 0)
);

create table warehouse.dim_date (
    date_key date primary key,
    year integer not null,
    quarter smallint not null check (quarter between 1 and 4),
    month smallint not null check (month between 1 and 12),
    day smallint not null check (day between 1 and 31),
    day_of_week smallint not null check (day_of_week between 1 and 7),
    is_weekend boolean not null
);

create table warehouse.fact_operating_period (
    operating_period_id text primary key,
    organization_id text,
    start_at timestamptz,
    finish_at timestamptz,
    is_deleted boolean not null,
    created_at timestamptz,
    updated_at timestamptz
);

create table warehouse.fact_vehicle_operating_period (
    operating_period_id text not null
        references warehouse.fact_operating_period (operating_period_id),
    vehicle_id text not null references warehouse.dim_vehicle (vehicle_id),
    organization_id text not null references warehouse.dim_organization (organization_id),
    distance_km double precision not null check (distance_km >= 0),
    location_points integer not null check (location_points >= 1),
    first_location_at timestamptz not null,
    last_location_at timestamptz not null,
    primary key (operating_period_id, vehicle_id),
    check (last_location_at >= first_location_at)
);

create index fact_vehicle_operating_period_vehicle_idx
    on warehouse.fact_vehicle_operating_period (vehicle_id);

create table warehouse.fact_vehicle_event (
    event_id text primary key,
    vehicle_id text not null references warehouse.dim_vehicle (vehicle_id),
    organization_id text not null,
    event text not null check (event in ('register', 'update', 'deregister')),
    at timestamptz not null,
    lat double precision,
    lng double precision,
    location_at timestamptz,
    is_valid_point boolean not null,
    event_date date not null references warehouse.dim_date (date_key),
    check (event_date = (at at time zone 'UTC')::date)
);

create index fact_vehicle_event_vehicle_location_idx
    on warehouse.fact_vehicle_event (vehicle_id, location_at);

create index fact_vehicle_event_event_date_idx
    on warehouse.fact_vehicle_event (event_date);

create table warehouse.load_audit (
    id bigint generated always as identity primary key,
    run_id text not null unique,
    flow_run_id text,
    partition_date date not null,
    rows jsonb not null,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    loaded_by text not null default current_user
);
