"""Where PostgreSQL is loaded: curated Parquet -> COPY into staging -> merge, one transaction
per load, recorded in warehouse.load_audit; plus the reads for `vdp report` and crash recovery."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from flows.checkpoints import checkpoint
from flows.lake import RunOutput
from flows.pgbinary import binary_slices
from flows.tables import EXCHANGE, LOADED, PARTITION_KEYS, REPLACE_PERIODS, loaded_as
from flows.warehouse import (
    WarehouseConnectionError,
    WarehouseError,
    connect,
    describe_error,
    migrate,
    read_sql,
)

LOAD_LOCK_KEY = 0x5644_5002  # arbitrary fixed key: two loads never merge at the same time
COPY_ROWS = 50_000  # rows per CSV slice sent to COPY

# Load order (dimensions before the facts that reference them) and column order per table.
TABLES = {name: table.column_names for name, table in LOADED.items()}
REPLACED = set(loaded_as(REPLACE_PERIODS))  # delete the recomputed periods' rows, then insert
(EXCHANGED,) = loaded_as(EXCHANGE)  # replaced per event date by partition exchange, never staged


@dataclass
class LoadSummary:
    """What one load did: rows merged per table, wall time, and whether the run was already in."""

    run_id: str
    rows: dict[str, int]
    seconds: float
    already_loaded: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _curated_files(curated_dir: Path, table: str, event_dates: list[dt.date]) -> list[Path]:
    """Parquet files a load reads: for events the partitions of ``event_dates`` (a missing
    partition means that date has no vehicle events left), for every other table the rows the
    transform found new or changed (``RunOutput.changes``), never the whole table."""
    output = RunOutput(curated_dir)
    if table == EXCHANGED:
        parts = [output.partition(table, PARTITION_KEYS[table], d) for d in event_dates]
        return sorted(f for part in parts for f in part.glob("*.parquet"))
    files = sorted(output.changes(table).glob("*.parquet"))
    if not files:
        raise WarehouseError(
            f"curated table {table} has no Parquet files in {output.changes(table)}; "
            "run the transform first"
        )
    return files


def read_curated(curated_dir: Path, table: str, event_dates: list[dt.date]) -> pl.DataFrame:
    """The curated rows of one table, columns in warehouse order."""
    columns = list(TABLES[table])
    frames = []
    for path in _curated_files(curated_dir, table, event_dates):
        frame = pl.read_parquet(path, hive_partitioning=False)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise WarehouseError(
                f"curated file {path} lacks columns {missing}; re-run the transform"
            )
        frames.append(frame.select(columns))
    if not frames:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return pl.concat(frames, how="vertical_relaxed")


def _copy(conn: psycopg.Connection, target: sql.Composable, frame: pl.DataFrame) -> None:
    """COPY a frame's rows into ``target`` as CSV slices."""
    if frame.height == 0:
        return
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    copy = sql.SQL("copy {} ({}) from stdin (format csv)").format(target, columns)
    with conn.cursor().copy(copy) as pipe:
        for chunk in _csv_slices(frame):
            pipe.write(chunk)


def _copy_binary(conn: psycopg.Connection, target: sql.Composable, frame: pl.DataFrame) -> None:
    """COPY a frame's rows into ``target`` in PostgreSQL's binary format: for ~1M events the
    server spends ~1.5 s less than parsing CSV (timestamps, floats, dates), same rows."""
    if frame.height == 0:
        return
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    copy = sql.SQL("copy {} ({}) from stdin (format binary)").format(target, columns)
    with conn.cursor().copy(copy) as pipe:
        for chunk in binary_slices(frame, COPY_ROWS):
            pipe.write(chunk)


def _stage(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
    """COPY a frame into a temporary staging table shaped like the warehouse table."""
    stage = sql.Identifier(f"stage_{table}")
    conn.execute(
        sql.SQL("create temp table {} (like {}) on commit drop").format(
            stage, sql.Identifier("warehouse", table)
        )
    )
    _copy(conn, stage, frame)


def _csv_slices(frame: pl.DataFrame) -> Iterator[bytes]:
    """The frame as CSV, one slice at a time: PostgreSQL parses a slice while the next one is
    formatted, and the whole table is never held as CSV in memory."""
    for part in frame.iter_slices(COPY_ROWS):
        buffer = io.BytesIO()
        part.write_csv(buffer, include_header=False)
        yield buffer.getvalue()


def partition_tag(run_id: str) -> str:
    """An identifier-safe tag for this load's partition tables: a short hash of the run id
    (to trace a partition to its run) plus random digits, since a run id may be loaded again
    (e.g. after load_audit was emptied) while its earlier partitions are still attached."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:8] + secrets.token_hex(2)


def _exchange_events(
    conn: psycopg.Connection, frame: pl.DataFrame, event_dates: list[dt.date], tag: str
) -> int:
    """Replace each event date's partition of fact_vehicle_event with a table of this load's
    rows: COPY into a bare table first (no per-row index or FK work), then swap them all in;
    the database functions build indexes and check foreign keys in bulk. Returns rows in."""
    by_date = frame.partition_by("event_date", as_dict=True) if frame.height else {}
    made = []
    for day in event_dates:
        name = conn.execute(read_sql("create_fact_vehicle_event_partition.sql"), [day, tag])
        table = name.fetchone()[0]
        _copy_binary(conn, sql.Identifier("warehouse", table), by_date.get((day,), frame.clear()))
        made.append((day, table))
    for day, table in made:
        conn.execute(read_sql("exchange_fact_vehicle_event_partition.sql"), [day, table])
    return sum(by_date[(day,)].height for day in event_dates if (day,) in by_date)


def _identifiers(names: tuple[str, ...] | list[str], qualifier: str | None = None) -> sql.Composed:
    """``a, b`` or, with a qualifier, ``q.a, q.b``, quoted."""
    parts = [sql.Identifier(qualifier, n) if qualifier else sql.Identifier(n) for n in names]
    return sql.SQL(", ").join(parts)


def _merge_statement(table: str) -> sql.Composed:
    """The statement that moves a table's staged rows into the warehouse table, its column
    lists filled in from the declaration (flows/tables.py): an upsert on the key, or for a
    table replaced by period the insert of the recomputed periods' rows."""
    declared = LOADED[table]
    columns = declared.column_names
    if declared.load == REPLACE_PERIODS:
        template, values = "insert_recomputed_rows.sql", {}
    else:
        others = [c for c in columns if c not in declared.key]
        values = {
            "key": _identifiers(declared.key),
            "assignments": sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("excluded", c))
                for c in others
            ),
            "target_values": _identifiers(others, "target"),
            "excluded_values": _identifiers(others, "excluded"),
        }
        template = "upsert_staged_rows.sql"
    return sql.SQL(read_sql(template)).format(
        table=sql.Identifier("warehouse", table),
        stage=sql.Identifier(f"stage_{table}"),
        columns=_identifiers(columns),
        **values,
    )


def _merge(
    conn: psycopg.Connection, frames: dict[str, pl.DataFrame], scope: dict[str, object], tag: str
) -> dict[str, int]:
    """Stage every table, then merge in load order; returns rows merged per table."""
    for table, frame in frames.items():
        if table != EXCHANGED:
            _stage(conn, table, frame)
    checkpoint("load.copied")
    rows = {}
    for table, frame in frames.items():
        if table == EXCHANGED:
            rows[table] = _exchange_events(conn, frame, scope["event_dates"], tag)
        elif table in REPLACED:
            conn.execute(read_sql(f"delete_{table}.sql"), scope)
            rows[table] = conn.execute(_merge_statement(table), scope).rowcount
        else:
            conn.execute(_merge_statement(table))
            rows[table] = frame.height
    checkpoint("load.merged")
    return rows


def _require_schema(conn: psycopg.Connection) -> bool:
    """Whether the warehouse schema is migrated (load_audit exists)."""
    found = conn.execute("select to_regclass('warehouse.load_audit')").fetchone()
    return found is not None and found[0] is not None


def _load(
    conn: psycopg.Connection,
    frames: dict[str, pl.DataFrame],
    scope: dict[str, object],
    audit: dict[str, object],
) -> LoadSummary:
    """The body of the load transaction: lock, skip a run already loaded, merge, audit."""
    started = time.perf_counter()
    conn.execute("set local time zone 'UTC'")
    conn.execute("select pg_advisory_xact_lock(%s)", [LOAD_LOCK_KEY])
    run_id = str(audit["run_id"])
    done = conn.execute("select rows from warehouse.load_audit where run_id = %s", [run_id])
    previous = done.fetchone()
    if previous is not None:
        return LoadSummary(run_id, previous[0], time.perf_counter() - started, True)
    rows = _merge(conn, frames, scope, partition_tag(run_id))
    conn.execute(read_sql("insert_load_audit.sql"), {**audit, "rows": Jsonb(rows)})
    checkpoint("load.audited")
    return LoadSummary(run_id, rows, time.perf_counter() - started)


def load_run(
    url: str,
    curated_dir: Path,
    *,
    run_id: str,
    partition_date: dt.date,
    period_ids: list[str],
    event_dates: list[dt.date],
    source_days: list[dt.date] | None = None,
    flow_run_id: str | None = None,
) -> LoadSummary:
    """Load one run's curated tables in one transaction: upsert dimensions and periods, replace
    the vehicle rows of ``period_ids`` and the events of ``event_dates``. A run_id already in
    load_audit is not loaded twice; any failure rolls everything back. load_audit records
    ``source_days`` (default: the partition date) as the source days the load covered."""
    started = time.perf_counter()
    frames = {t: read_curated(Path(curated_dir), t, event_dates) for t in TABLES}
    audit = {
        "run_id": run_id,
        "flow_run_id": flow_run_id,
        "partition_date": partition_date,
        "source_days": sorted(set(source_days or [partition_date])),
        "started_at": dt.datetime.now(dt.UTC),
    }
    scope = {"period_ids": sorted(set(period_ids)), "event_dates": sorted(set(event_dates))}
    with connect(url) as conn:
        if not _require_schema(conn):
            raise WarehouseError("the warehouse has no schema yet; run the migrations first")
        try:
            with conn.transaction():
                summary = _load(conn, frames, scope, audit)
            checkpoint("load.committed")
        except psycopg.Error as exc:
            raise WarehouseError(
                f"load of run {run_id} failed and was rolled back: {describe_error(exc)}"
            ) from None
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def is_load_committed(url: str, run_id: str) -> bool:
    """Whether load_audit holds ``run_id`` (lets a crashed run roll its lake swap forward)."""
    with connect(url) as conn:
        if not _require_schema(conn):
            return False
        found = conn.execute("select 1 from warehouse.load_audit where run_id = %s", [run_id])
        return found.fetchone() is not None


def fetch_answer(url: str, date: dt.date | None = None) -> list[dict]:
    """Rows of avg_distance_per_operating_period, optionally periods overlapping a UTC day."""
    with connect(url) as conn:
        if not _require_schema(conn):
            raise WarehouseError("the warehouse has no schema yet; run the pipeline first")
        cursor = conn.cursor(row_factory=dict_row)
        return cursor.execute(read_sql("select_answer.sql"), {"day": date}).fetchall()


def _is_connection_failure(task_, task_run, state) -> bool:
    """Retry only when the warehouse refused the connection, never for data errors."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        error = state.result(raise_on_failure=False)
    return isinstance(error, WarehouseConnectionError)


@task(
    name="load-warehouse",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_is_connection_failure,
    timeout_seconds=3600,
    cache_policy=NO_CACHE,
)
def load_warehouse(
    url: str | SecretStr,
    curated_dir: Path,
    *,
    run_id: str,
    partition_date: dt.date,
    period_ids: list[str],
    event_dates: list[dt.date],
    source_days: list[dt.date] | None = None,
    flow_run_id: str | None = None,
) -> dict[str, object]:
    """Migrate the warehouse if needed, then load one run (see ``load_run``)."""
    from prefect.runtime import flow_run

    dsn = url.get_secret_value() if isinstance(url, SecretStr) else url
    with connect(dsn) as conn:
        applied = migrate(conn)
    summary = load_run(
        dsn,
        curated_dir,
        run_id=run_id,
        partition_date=partition_date,
        period_ids=period_ids,
        event_dates=event_dates,
        source_days=source_days,
        flow_run_id=flow_run_id or flow_run.get_id(),
    )
    logger = get_run_logger()
    if applied:
        logger.info("applied warehouse migrations: %s", ", ".join(applied))
    logger.info("loaded run %s: %s in %.2f s", run_id, summary.rows, summary.seconds)
    return summary.as_dict()
