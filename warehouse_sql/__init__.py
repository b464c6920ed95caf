"""The warehouse's PostgreSQL: numbered migrations (migrations/) and the statements the loads run.
A data package: it installs as ``flows.warehouse_sql``, where the code reads it through
importlib.resources, from a wheel as from a checkout."""
