"""Every table the pipeline writes, declared once: its columns and their types, its key, and how a
run replaces it in the lake and in the warehouse.

The DuckDB schemas the transform and the catalog read with, the Polars schema validation reads
with and the load's column lists and merge statements are derived from here. The hand-written
parts are checked against it by tests/test_tables.py: the warehouse migrations (columns, types,
primary keys), the models' output (flows/sql) and the columns the expectation suites name.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# DuckDB type (as the lake's Parquet holds it) -> PostgreSQL type (information_schema spelling)
# and Polars type; a column narrower in the warehouse says so with Column.pg_type.
PG_TYPES = {
    "varchar": "text",
    "timestamptz": "timestamp with time zone",
    "double": "double precision",
    "boolean": "boolean",
    "bigint": "bigint",
    "integer": "integer",
    "date": "date",
}
POLARS_TYPES: dict[str, pl.DataType] = {
    "varchar": pl.String(),
    "timestamptz": pl.Datetime("us", "UTC"),
    "double": pl.Float64(),
    "boolean": pl.Boolean(),
    "bigint": pl.Int64(),
    "integer": pl.Int32(),
    "date": pl.Date(),
}

# How a load replaces a table's rows in warehouse.<table>.
UPSERT = "upsert"  # merge on the key: new rows inserted, changed rows updated, the rest kept
REPLACE_PERIODS = "replace_periods"  # the rows of the recomputed periods deleted, then inserted
EXCHANGE = "exchange"  # each loaded event date's partition swapped in whole (migration 004)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type, a key of PG_TYPES
    pg_type: str | None = None  # the warehouse's type where it is narrower than the lake's

    @property
    def warehouse_type(self) -> str:
        return self.pg_type or PG_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    """A table: ``partition`` is the date a run replaces its lake rows by (curated tables:
    ``curated/<name>/<partition>=<date>/``; None: rewritten whole by every run), ``load`` how a
    load replaces its warehouse rows (None: lake only)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition: str | None = None
    load: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.key) - set(self.column_names)
        if unknown or self.load not in (None, UPSERT, REPLACE_PERIODS, EXCHANGE):
            raise ValueError(f"table {self.name}: key {sorted(unknown)} or load {self.load}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def schema(self) -> dict[str, str]:
        """Column -> DuckDB type, in the lake's column order."""
        return {c.name: c.type for c in self.columns}

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: POLARS_TYPES[c.type] for c in self.columns})

    @property
    def warehouse_types(self) -> dict[str, str]:
        """Column -> PostgreSQL type, as information_schema.columns spells it."""
        return {c.name: c.warehouse_type for c in self.columns}


def _columns(*specs: tuple[str, str] | tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


EVENTS = Table(
    "events",
    _columns(
        ("event_id", "varchar"),
        ("event", "varchar"),
        ("on", "varchar"),
        ("at", "timestamptz"),
        ("entity_id", "varchar"),
        ("organization_id", "varchar"),
        ("lat", "double"),
        ("lng", "double"),
        ("location_at", "timestamptz"),
        ("period_start", "timestamptz"),
        ("period_finish", "timestamptz"),
        ("break_vehicle_id", "varchar"),
        ("is_valid_point", "boolean"),
        ("source_key", "varchar"),
        ("line_number", "bigint"),
        ("ingested_at", "timestamptz"),
        ("event_date", "date"),
        ("source_day", "date"),
    ),
    key=("source_day", "event_id"),
    partition="source_day",
)

QUARANTINE = Table(
    "quarantine",
    _columns(
        ("source_key", "varchar"),
        ("line_number", "bigint"),
        ("raw_line", "varchar"),
        ("reason", "varchar"),
        ("ingested_at", "timestamptz"),
        ("source_day", "date"),
    ),
    key=("source_day", "source_key", "line_number"),
    partition="source_day",
)

# Bounds and liveness of an operating period, and of a break (shaped like a period, DESIGN.md).
_LIFECYCLE = (
    ("start_at", "timestamptz"),
    ("finish_at", "timestamptz"),
    ("is_deleted", "boolean"),
    ("created_at", "timestamptz"),  # at of the latest create
    ("updated_at", "timestamptz"),  # at of the last event
)

# The curated tables, in load order: dimensions before the facts that reference them.
CURATED: dict[str, Table] = {
    table.name: table
    for table in (
        Table(
            "dim_organization",
            _columns(
                ("organization_id", "varchar"),
                ("first_seen_at", "timestamptz"),
                ("last_seen_at", "timestamptz"),
                ("vehicles", "bigint"),
            ),
            key=("organization_id",),
            load=UPSERT,
        ),
        Table(
            "dim_vehicle",
            _columns(
                ("vehicle_id", "varchar"),
                ("organization_id", "varchar"),
                ("first_seen_at", "timestamptz"),
                ("last_seen_at", "timestamptz"),
                ("registered_at", "timestamptz"),
                ("deregistered_at", "timestamptz"),
                ("events", "bigint"),
            ),
            key=("vehicle_id",),
            load=UPSERT,
        ),
        Table(
            "dim_date",
            _columns(
                ("date_key", "date"),
                ("year", "integer"),
                ("quarter", "integer", "smallint"),
                ("month", "integer", "smallint"),
                ("day", "integer", "smallint"),
                ("day_of_week", "integer", "smallint"),
                ("is_weekend", "boolean"),
            ),
            key=("date_key",),
            load=UPSERT,
        ),
        Table(
            "fact_operating_period",
            _columns(
                ("operating_period_id", "varchar"),
                ("organization_id", "varchar"),
                *_LIFECYCLE,
            ),
            key=("operating_period_id",),
            load=UPSERT,
        ),
        Table(
            "fact_break",
            _columns(
                ("break_id", "varchar"),
                ("vehicle_id", "varchar"),
                ("organization_id", "varchar"),
                *_LIFECYCLE,
            ),
            key=("break_id",),
            load=UPSERT,
        ),
        Table(
            "fact_vehicle_operating_period",
            _columns(
                ("operating_period_id", "varchar"),
                ("vehicle_id", "varchar"),
                ("organization_id", "varchar"),
                ("distance_km", "double"),
                ("break_distance_km", "double"),
                ("location_points", "bigint", "integer"),
                ("first_location_at", "timestamptz"),
                ("last_location_at", "timestamptz"),
            ),
            key=("operating_period_id", "vehicle_id"),
            partition="period_date",  # the period's start date; not a column
            load=REPLACE_PERIODS,
        ),
        Table(
            "fact_vehicle_event",
            _columns(
                ("event_id", "varchar"),
                ("vehicle_id", "varchar"),
                ("organization_id", "varchar"),
                ("event", "varchar"),
                ("at", "timestamptz"),
                ("lat", "double"),
                ("lng", "double"),
                ("location_at", "timestamptz"),
                ("is_valid_point", "boolean"),
                ("event_date", "date"),
            ),
            # event_id alone is unique (event_date is the date of at, which event_id hashes);
            # a partitioned table's primary key must hold its partition key
            key=("event_id", "event_date"),
            partition="event_date",
            load=EXCHANGE,
        ),
    )
}

WHOLE_TABLES = tuple(name for name, table in CURATED.items() if table.partition is None)
PARTITION_KEYS = {name: t.partition for name, t in CURATED.items() if t.partition is not None}
LOADED = {name: table for name, table in CURATED.items() if table.load is not None}


def loaded_as(load: str) -> list[str]:
    """The curated tables a load replaces in the given way, in load order."""
    return [name for name, table in LOADED.items() if table.load == load]
