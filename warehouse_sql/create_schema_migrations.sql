-- Bootstrap for flows/warehouse.py:migrate(): the table that records applied migrations.
create schema if not exists warehouse;

create table if not exists warehouse.schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
);
