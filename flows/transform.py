"""Staged events -> curated facts and dimensions, incrementally, with DuckDB over Parquet.

A run for some source days recomputes only the operating periods and event dates those days
touch, reading whatever else it needs from every partition, and writes new versions of the
curated tables into a scratch directory; the flow publishes them with ``lake.Swap``.
"""

from __future__ import annotations

import datetime as dt
import glob
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from prefect import task

from flows.lake import Lake

SQL_DIR = Path(__file__).parent / "sql"

EVENTS_SCHEMA: dict[str, str] = {
    "event_id": "varchar",
    "event": "varchar",
    "on": "varchar",
    "at": "timestamptz",
    "entity_id": "varchar",
    "organization_id": "varchar",
    "lat": "double",
    "lng": "double",
    "location_at": "timestamptz",
    "period_start": "timestamptz",
    "period_finish": "timestamptz",
    "is_valid_point": "boolean",
    "source_key": "varchar",
    "line_number": "bigint",
    "ingested_at": "timestamptz",
    "event_date": "date",
    "source_day": "date",
}

CURATED_SCHEMAS: dict[str, dict[str, str]] = {
    "fact_operating_period": {
        "operating_period_id": "varchar",
        "organization_id": "varchar",
        "start_at": "timestamptz",
        "finish_at": "timestamptz",
        "is_deleted": "boolean",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
    },
    "fact_vehicle_operating_period": {
        "operating_period_id": "varchar",
        "vehicle_id": "varchar",
        "organization_id": "varchar",
        "distance_km": "double",
        "location_points": "bigint",
        "first_location_at": "timestamptz",
        "last_location_at": "timestamptz",
    },
    "fact_vehicle_event": {
        "event_id": "varchar",
        "vehicle_id": "varchar",
        "organization_id": "varchar",
        "event": "varchar",
        "at": "timestamptz",
        "lat": "double",
        "lng": "double",
        "location_at": "timestamptz",
        "is_valid_point": "boolean",
        "event_date": "date",
    },
    "dim_vehicle": {
        "vehicle_id": "varchar",
        "organization_id": "varchar",
        "first_seen_at": "timestamptz",
        "last_seen_at": "timestamptz",
        "registered_at": "timestamptz",
        "deregistered_at": "timestamptz",
        "events": "bigint",
    },
    "dim_organization": {
        "organization_id": "varchar",
        "first_seen_at": "timestamptz",
        "last_seen_at": "timestamptz",
        "vehicles": "bigint",
    },
    "dim_date": {
        "date_key": "date",
        "year": "integer",
        "quarter": "integer",
        "month": "integer",
        "day": "integer",
        "day_of_week": "integer",
        "is_weekend": "boolean",
    },
}

# Whole tables replaced on every run (fact_vehicle_event is replaced per event date).
WHOLE_TABLES = (
    "fact_operating_period",
    "fact_vehicle_operating_period",
    "dim_vehicle",
    "dim_organization",
    "dim_date",
)
PARTITIONED_TABLE = "fact_vehicle_event"


class TransformError(RuntimeError):
    """The curated tables could not be computed (unreadable staged Parquet, full disk…)."""


@dataclass
class TransformResult:
    """Where a transform run wrote its tables and what it recomputed."""

    out_dir: Path
    recomputed_period_ids: list[str] = field(default_factory=list)
    event_dates: list[dt.date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def swap_moves(self, lake: Lake) -> dict[Path, Path | None]:
        """Lake directory -> its new content in out_dir (None: remove), for ``lake.Swap``."""
        moves: dict[Path, Path | None] = {
            lake.curated_table(table): self.out_dir / table for table in WHOLE_TABLES
        }
        for event_date in self.event_dates:
            name = f"event_date={event_date.isoformat()}"
            new = self.out_dir / PARTITIONED_TABLE / name
            moves[lake.curated_table(PARTITIONED_TABLE) / name] = new if new.exists() else None
        return moves

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "recomputed_period_ids": list(self.recomputed_period_ids),
            "event_dates": [d.isoformat() for d in self.event_dates],
            "rows": dict(self.rows),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TransformResult:
        return cls(
            out_dir=Path(data["out_dir"]),
            recomputed_period_ids=list(data["recomputed_period_ids"]),
            event_dates=[dt.date.fromisoformat(d) for d in data["event_dates"]],
            rows=dict(data["rows"]),
        )


def read_sql(name: str) -> str:
    """The text of flows/sql/<name>.sql, without a trailing semicolon."""
    return (SQL_DIR / f"{name}.sql").read_text().strip().rstrip(";")


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def empty_select(schema: dict[str, str]) -> str:
    """A select with no rows but the given column names and types (a zone without files)."""
    columns = ", ".join(f'cast(null as {kind}) as "{name}"' for name, kind in schema.items())
    return f"select {columns} limit 0"


def parquet_select(files: list[str], schema: dict[str, str]) -> str:
    """Select the schema's columns from Parquet files or globs, or an empty select if none match."""
    paths = [f for f in files if glob.glob(f)]
    if not paths:
        return empty_select(schema)
    listing = ", ".join(sql_literal(p) for p in paths)
    columns = ", ".join(f'"{name}"' for name in schema)
    return f"select {columns} from read_parquet([{listing}], hive_partitioning = false)"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with UTC session time (dates of timestamps are UTC dates)."""
    con = duckdb.connect()
    con.sql("set TimeZone = 'UTC'")
    con.sql("set enable_progress_bar = false")  # bars go to stdout on ~1M rows
    con.sql(read_sql("macros"))
    return con


def _register_inputs(con: duckdb.DuckDBPyConnection, lake: Lake, days: list[dt.date]) -> None:
    """Staged events (all, and the run's), distinct events, and the published tables."""
    run_files = [str(p / "*.parquet") for d in days for p in lake.events_partitions_of(d)]
    con.sql(f"create view staged_events as {parquet_select([lake.events_glob], EVENTS_SCHEMA)}")
    con.sql(f"create view run_events as {parquet_select(run_files, EVENTS_SCHEMA)}")
    con.sql(f"create table events as {read_sql('events_distinct')}")
    for table in ("fact_operating_period", "fact_vehicle_operating_period"):
        files = [str(lake.curated_table(table) / "*.parquet")]
        select = parquet_select(files, CURATED_SCHEMAS[table])
        con.sql(f"create view published_{table.removeprefix('fact_')} as {select}")


def _touched_dates(con: duckdb.DuckDBPyConnection, lake: Lake) -> list[dt.date]:
    """Event dates of the run's rows, plus published partitions with no vehicle events left."""
    dates = {row[0] for row in con.sql("select distinct event_date from run_events").fetchall()}
    vehicle_dates = "select distinct event_date from events where \"on\" = 'vehicle'"
    present = {row[0] for row in con.sql(vehicle_dates).fetchall()}
    for path in lake.curated_table(PARTITIONED_TABLE).glob("event_date=*"):
        published = dt.date.fromisoformat(path.name.removeprefix("event_date="))
        if published not in present:
            dates.add(published)
    return sorted(dates)


def _write(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> int:
    """Write a select to one zstd Parquet file; returns its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con.sql(select).write_parquet(str(path), compression="zstd")
    count = f"select count(*) from read_parquet({sql_literal(str(path))})"
    return int(con.sql(count).fetchall()[0][0])


def _write_vehicle_events(
    con: duckdb.DuckDBPyConnection, out_dir: Path, dates: list[dt.date]
) -> int:
    """One part-0.parquet per touched event date that has vehicle events."""
    con.sql("create table touched_dates (event_date date)")
    if dates:
        con.sql("insert into touched_dates select unnest($dates)", params={"dates": dates})
    con.sql(f"create table {PARTITIONED_TABLE} as {read_sql('fct_vehicle_event')}")
    per_date = f"select event_date, count(*) from {PARTITIONED_TABLE} group by 1"
    counts = dict(con.sql(per_date).fetchall())
    for event_date in counts:
        partition = f"event_date={event_date.isoformat()}"
        path = out_dir / PARTITIONED_TABLE / partition / "part-0.parquet"
        where = f"where event_date = date '{event_date.isoformat()}'"
        _write(con, f'select * from {PARTITIONED_TABLE} {where} order by "at", event_id', path)
    return sum(counts.values())


def _build(con: duckdb.DuckDBPyConnection, lake: Lake, out_dir: Path) -> TransformResult:
    con.sql(f"create table fact_operating_period as {read_sql('fct_operating_period')}")
    con.sql(f"create table recomputed_periods as {read_sql('int_recomputed_periods')}")
    con.sql(f"create table location_points as {read_sql('int_location_points')}")
    models = {
        "fact_operating_period": "select * from fact_operating_period",
        "fact_vehicle_operating_period": read_sql("fct_vehicle_operating_period"),
        "dim_vehicle": read_sql("dim_vehicle"),
        "dim_organization": read_sql("dim_organization"),
        "dim_date": read_sql("dim_date"),
    }
    rows = {t: _write(con, sql, out_dir / t / "part-0.parquet") for t, sql in models.items()}
    dates = _touched_dates(con, lake)
    rows[PARTITIONED_TABLE] = _write_vehicle_events(con, out_dir, dates)
    period_ids = [r[0] for r in con.sql("select * from recomputed_periods").fetchall()]
    return TransformResult(out_dir, period_ids, dates, rows)


def transform(lake: Lake, source_days: list[dt.date], out_dir: Path) -> TransformResult:
    """New versions of the curated tables for a run over ``source_days``, written to out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = connect()
    try:
        _register_inputs(con, lake, sorted(set(source_days)))
        return _build(con, lake, out_dir)
    except duckdb.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise TransformError(
            f"building curated tables for {lake.root} failed: {first_line}; "
            "check the staged events Parquet (re-stage the day) and free disk space"
        ) from exc
    finally:
        con.close()


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


@task(name="build-curated-tables")
def transform_partition(lake_root: str, source_days: list, out_dir: str) -> dict:
    """Prefect task: ``transform`` for the given source days; returns TransformResult.to_dict()."""
    days = [_as_date(d) for d in source_days]
    return transform(Lake(Path(lake_root)), days, Path(out_dir)).to_dict()
