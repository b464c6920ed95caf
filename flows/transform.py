"""Staged events -> curated facts and dimensions, incrementally, with DuckDB over Parquet.

A run for some source days reads the staged events of the event dates those days touch, and
the state it needs for the periods and dates they touch (``lake/state/``: every period event,
a summary per entity and date, and the valid points by the date they were located), never the
events of the rest of history. It writes the touched curated partitions, the small whole
tables, the rows the warehouse must receive and the new state into a scratch directory; the
flow publishes them with ``lake.Swap``. A lake without state is rebuilt from all its events
once (the first run after an upgrade, or a fresh lake).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from prefect import task

from flows import duck
from flows.errors import VdpError
from flows.lake import Lake, RunOutput
from flows.logs import run_logger
from flows.scope import STATE_VERSION, VERSION_FILE, Scope, plan
from flows.tables import CURATED, EVENTS, PARTITION_KEYS, WHOLE_TABLES

SQL_DIR = Path(__file__).parent / "sql"

EVENTS_SCHEMA = EVENTS.schema
CURATED_SCHEMAS = {name: table.schema for name, table in CURATED.items()}
# Whole tables the transform builds before choosing the periods to recompute.
EVENT_FACTS = ("fact_operating_period", "fact_break")

# The transform's own state under lake/state/, so a run never re-reads history's events.
STATE_SCHEMAS: dict[str, dict[str, str]] = {
    "period_events": {
        "operating_period_id": "varchar",
        "event": "varchar",
        "at": "timestamptz",
        "organization_id": "varchar",
        "period_start": "timestamptz",
        "period_finish": "timestamptz",
        "event_id": "varchar",
        "event_date": "date",
    },
    "break_events": {
        "break_id": "varchar",
        "event": "varchar",
        "at": "timestamptz",
        "organization_id": "varchar",
        "vehicle_id": "varchar",
        "break_start": "timestamptz",
        "break_finish": "timestamptz",
        "event_id": "varchar",
        "event_date": "date",
    },
    "entity_dates": {
        "event_date": "date",
        "on": "varchar",
        "entity_id": "varchar",
        "organization_id": "varchar",
        "first_at": "timestamptz",
        "last_at": "timestamptz",
        "registered_at": "timestamptz",
        "deregistered_at": "timestamptz",
        "events": "bigint",
        "last_event_id": "varchar",
    },
    "location_points": {
        "vehicle_id": "varchar",
        "organization_id": "varchar",
        "location_at": "timestamptz",
        "at": "timestamptz",
        "lat": "double",
        "lng": "double",
    },
    "source_days": {
        "source_day": "date",
        "event_date": "date",
        "file": "varchar",
        "size": "bigint",
        "mtime_ns": "bigint",
        "inode": "bigint",
    },
}


class TransformError(VdpError):
    """The curated tables could not be computed (unreadable staged Parquet, full disk…)."""


@dataclass
class TransformResult:
    """Where a transform run wrote its tables, what it recomputed and how to publish it."""

    out_dir: Path
    recomputed_period_ids: list[str] = field(default_factory=list)
    event_dates: list[dt.date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    source_days: list[dt.date] = field(default_factory=list)
    events_files: list[Path] = field(default_factory=list)  # staged files of source_days
    removed_period_ids: list[str] = field(default_factory=list)
    moves: dict[str, str | None] = field(default_factory=dict)
    rebuilt: bool = False

    def swap_moves(self) -> dict[Path, Path | None]:
        """Lake path -> its new content in out_dir (None: remove), for ``lake.Swap``."""
        return {Path(f): Path(n) if n else None for f, n in self.moves.items()}

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "recomputed_period_ids": list(self.recomputed_period_ids),
            "event_dates": [d.isoformat() for d in self.event_dates],
            "rows": dict(self.rows),
            "source_days": [d.isoformat() for d in self.source_days],
            "events_files": [str(p) for p in self.events_files],
            "removed_period_ids": list(self.removed_period_ids),
            "moves": dict(self.moves),
            "rebuilt": self.rebuilt,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TransformResult:
        return cls(
            out_dir=Path(data["out_dir"]),
            recomputed_period_ids=list(data["recomputed_period_ids"]),
            event_dates=[dt.date.fromisoformat(d) for d in data["event_dates"]],
            rows=dict(data["rows"]),
            source_days=[dt.date.fromisoformat(d) for d in data.get("source_days", [])],
            events_files=[Path(p) for p in data.get("events_files", [])],
            removed_period_ids=list(data.get("removed_period_ids", [])),
            moves=dict(data.get("moves", {})),
            rebuilt=bool(data.get("rebuilt", False)),
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


def parquet_select(files: list[str], schema: dict[str, str], tolerant: bool = False) -> str:
    """Select the schema's columns from Parquet files or globs, or an empty select if none match.
    ``tolerant`` reads files written before a column was added (the column is NULL there)."""
    paths = [f for f in files if glob.glob(f)]
    if not paths:
        return empty_select(schema)
    listing = ", ".join(sql_literal(p) for p in paths)
    columns = ", ".join(f'"{name}"' for name in schema)
    if not tolerant:
        return f"select {columns} from read_parquet([{listing}], hive_partitioning = false)"
    files_select = (
        f"select * from read_parquet([{listing}], hive_partitioning = false, union_by_name = true)"
    )
    return f"select {columns} from (({empty_select(schema)}) union all by name ({files_select}))"


def events_select(files: list[str]) -> str:
    """The staged events of files or globs, whichever version of the schema staged them."""
    return parquet_select(files, EVENTS_SCHEMA, tolerant=True)


def connect(
    memory_limit: str | None = None, temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A ``duck.connect`` connection with the transform's macros; with a temp directory the
    row order of results is not kept (the models order what needs it), so large sorts and
    joins can spill."""
    con = duck.connect(memory_limit, temp_dir)
    if temp_dir is not None:
        con.sql("set preserve_insertion_order = false")
    con.sql(read_sql("macros"))
    return con


def _parquet_files(dirs: list[Path]) -> list[str]:
    return [str(f) for d in dirs for f in sorted(d.glob("*.parquet"))]


def _view(
    con: duckdb.DuckDBPyConnection, name: str, files: list, schema: dict, tolerant: bool = False
) -> None:
    select = parquet_select([str(f) for f in files], schema, tolerant)
    con.sql(f"create view {name} as {select}")


def _published_view(con: duckdb.DuckDBPyConnection, name: str, files: list, table: str) -> None:
    """A published curated table's rows; files written before a column was declared read it
    as NULL, so their rows count as changed and reach the warehouse with it."""
    _view(con, name, files, CURATED_SCHEMAS[table], tolerant=True)


def _dates_table(con: duckdb.DuckDBPyConnection, name: str, dates: list[dt.date]) -> None:
    con.sql(f"create table {name} (event_date date)")
    if dates:
        con.sql(f"insert into {name} select unnest($dates)", params={"dates": dates})


def _register_inputs(con: duckdb.DuckDBPyConnection, lake: Lake, scope: Scope) -> None:
    """The events of the touched dates (distinct), the run's own staged rows, and the published
    state those dates and periods need; a rebuild starts from empty state."""
    _dates_table(con, "touched_dates", scope.event_dates)
    touched = [p for d in scope.event_dates for p in lake.events_partitions_on(d)]
    _view(con, "staged_events", _parquet_files(touched), EVENTS_SCHEMA, tolerant=True)
    _view(con, "run_events", scope.run_files(lake), EVENTS_SCHEMA, tolerant=True)
    con.sql(f"create table events as {read_sql('events_distinct')}")
    for name in ("period_events", "break_events", "entity_dates"):
        files = [] if scope.rebuild else _parquet_files([lake.state_table(name)])
        _view(con, f"previous_{name}", files, STATE_SCHEMAS[name])
    points = (
        []
        if scope.rebuild
        else [p for d in scope.event_dates for p in lake.points_partitions_of(d)]
    )
    _view(con, "previous_points", _parquet_files(points), STATE_SCHEMAS["location_points"])
    for table in WHOLE_TABLES:
        files = _parquet_files([lake.curated_table(table)])
        _published_view(con, f"published_{table.removeprefix('fact_')}", files, table)


def _ids(con: duckdb.DuckDBPyConnection, select: str) -> list:
    return [row[0] for row in con.sql(select).fetchall()]


def _select_periods(con: duckdb.DuckDBPyConnection, scope: Scope) -> list[str]:
    """Period and break state, then which periods this run recomputes (all of them in a
    rebuild)."""
    con.sql(f"create table all_period_events as {read_sql('int_period_events')}")
    con.sql(f"create table fact_operating_period as {read_sql('fct_operating_period')}")
    con.sql(f"create table all_break_events as {read_sql('int_break_events')}")
    con.sql(f"create table fact_break as {read_sql('fct_break')}")
    con.sql(f"create table touched_points as {read_sql('int_touched_points')}")
    if scope.rebuild:
        recomputed = "select operating_period_id from fact_operating_period"
    else:
        con.sql(f"create table changed_point_times as {read_sql('int_changed_point_times')}")
        recomputed = read_sql("int_recomputed_periods")
    con.sql(f"create table recomputed_periods as {recomputed}")
    return _ids(con, "select operating_period_id from recomputed_periods order by 1")


def _register_points(con: duckdb.DuckDBPyConnection, lake: Lake, scope: Scope) -> None:
    """Candidate points of the recomputed windows: the touched dates' points as they are now,
    plus the published points of the other event dates located on the windows' dates (none
    in a rebuild, where the touched dates are all dates)."""
    dirs = []
    if not scope.rebuild:
        window_dates = _ids(
            con,
            """select distinct unnest(generate_series(
                   p.start_at::date, p.finish_at::date, interval 1 day))::date
               from fact_operating_period as p
               semi join recomputed_periods as r using (operating_period_id)""",
        )
        touched = set(scope.event_dates)
        for day in window_dates:
            located = lake.points_partitions_at(day)
            dirs += [path for dated, path in located.items() if dated not in touched]
    _view(con, "published_points", _parquet_files(dirs), STATE_SCHEMAS["location_points"])
    columns = ", ".join(f'"{c}"' for c in STATE_SCHEMAS["location_points"])
    con.sql(
        f"create view candidate_points as select {columns} from touched_points "
        f"union all select {columns} from published_points"
    )
    con.sql(f"create table location_points as {read_sql('int_location_points')}")


def _register_vehicle_partitions(
    con: duckdb.DuckDBPyConnection, lake: Lake, scope: Scope
) -> list[dt.date]:
    """The period-date partitions of fact_vehicle_operating_period this run rewrites: the new
    and old start dates of recomputed periods and the start dates of periods that are gone (a
    rebuild replaces the table whole and reads none of them)."""
    dates = _ids(
        con,
        """select start_at::date from fact_operating_period
           semi join recomputed_periods using (operating_period_id)
           union
           select start_at::date from published_operating_period
           where operating_period_id in (select operating_period_id from recomputed_periods)
               or operating_period_id not in (select operating_period_id from fact_operating_period)
           order by 1""",
    )
    table = "fact_vehicle_operating_period"
    parts = (
        [] if scope.rebuild else [lake.curated_partition(table, "period_date", d) for d in dates]
    )
    _published_view(con, "published_vehicle_operating_period", _parquet_files(parts), table)
    return dates


def _write(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> int:
    """Write a select to one zstd Parquet file; returns its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con.sql(select).write_parquet(str(path), compression="zstd")
    count = f"select count(*) from read_parquet({sql_literal(str(path))})"
    return int(con.sql(count).fetchall()[0][0])


def _write_partitioned(
    con: duckdb.DuckDBPyConnection, select: str, out: Path, keys: list[str], keep: bool
) -> int:
    """Write a select as hive partitions ``key=value/part-0.parquet`` under ``out``; ``keep``
    writes the key columns into the files too. Returns the row count."""
    out.mkdir(parents=True, exist_ok=True)
    options = (
        f"format parquet, compression zstd, partition_by ({', '.join(keys)}), "
        f"filename_pattern 'part-{{i}}', overwrite_or_ignore, "
        f"write_partition_columns {str(keep).lower()}"
    )
    copied = con.execute(f"copy ({select}) to {sql_literal(str(out))} ({options})").fetchall()
    return int(copied[0][0]) if copied else 0


def _changed(table: str, rebuild: bool) -> str:
    """Rows of a whole table the warehouse must receive: new or changed since published."""
    name = table.removeprefix("fact_")
    return f"select * from {table}" + ("" if rebuild else f" except select * from published_{name}")


def _write_tables(con: duckdb.DuckDBPyConnection, out_dir: Path, scope: Scope) -> dict[str, int]:
    """The curated output: whole small tables, the touched partitions of the partitioned ones,
    and beside them the rows the warehouse must receive (``RunOutput.changes``)."""
    models = {
        "fact_operating_period": "select * from fact_operating_period",
        "fact_break": "select * from fact_break",
        "dim_vehicle": read_sql("dim_vehicle"),
        "dim_organization": read_sql("dim_organization"),
        "dim_date": read_sql("dim_date"),
    }
    rows = {}
    output = RunOutput(out_dir)
    for table, select in models.items():
        if table not in EVENT_FACTS:
            con.sql(f"create table {table} as {select}")
        rows[table] = _write(con, f"select * from {table}", output.table(table) / "part-0.parquet")
        _write(con, _changed(table, scope.rebuild), output.changes(table) / "part-0.parquet")
    vehicle_periods = "fact_vehicle_operating_period"
    rows[vehicle_periods] = _write_curated_partitions(
        con, "select * from vehicle_periods", output, vehicle_periods
    )
    recomputed = """select * exclude (period_date) from vehicle_periods
        where operating_period_id in (select operating_period_id from recomputed_periods)"""
    _write(con, recomputed, output.changes(vehicle_periods) / "part-0.parquet")
    events = "fact_vehicle_event"
    rows[events] = _write_curated_partitions(con, read_sql("fct_vehicle_event"), output, events)
    return rows


def _write_curated_partitions(
    con: duckdb.DuckDBPyConnection, select: str, output: RunOutput, table: str
) -> int:
    """A partitioned curated table of the run's output, by its declared partition key (kept in
    the files when it is one of the table's columns)."""
    key = PARTITION_KEYS[table]
    keep = key in CURATED[table].column_names
    return _write_partitioned(con, select, output.table(table), [key], keep)


def _write_state(con: duckdb.DuckDBPyConnection, lake: Lake, out_dir: Path, scope: Scope) -> None:
    """The new incremental state beside the curated output (``RunOutput.state_table``)."""
    state = RunOutput(out_dir).state_table
    for name, select in (
        ("period_events", "select * from all_period_events"),
        ("break_events", "select * from all_break_events"),
        ("entity_dates", "select * from entity_dates"),
    ):
        _write(con, select, state(name) / "part-0.parquet")
    columns = ", ".join(f'"{c}"' for c in STATE_SCHEMAS["location_points"])
    points = f"select {columns}, location_date, event_date from touched_points"
    _write_partitioned(
        con, points, state("location_points"), ["location_date", "event_date"], False
    )
    state("source_days").mkdir(parents=True, exist_ok=True)
    scope.record().write_parquet(state("source_days") / "part-0.parquet", compression="zstd")
    version = {"version": STATE_VERSION}
    (state("source_days") / VERSION_FILE).write_text(json.dumps(version) + "\n")


def _moves(
    lake: Lake, out_dir: Path, scope: Scope, vehicle_dates: list[dt.date]
) -> dict[str, str | None]:
    """Lake path -> new content (None: remove) for every table, partition and state piece the
    run rewrote; a rebuild replaces the partitioned tables and the points state whole."""
    output = RunOutput(out_dir)
    moves: dict[Path, Path | None] = {lake.curated_table(t): output.table(t) for t in WHOLE_TABLES}
    for name in ("period_events", "break_events", "entity_dates", "source_days"):
        moves[lake.state_table(name)] = output.state_table(name)
    partitioned = {
        "fact_vehicle_event": scope.event_dates,
        "fact_vehicle_operating_period": vehicle_dates,
    }
    points = lake.state_table("location_points")
    if scope.rebuild:
        for table in partitioned:
            moves[lake.curated_table(table)] = output.table(table)
        moves[points] = output.state_table("location_points")
    else:
        for table, dates in partitioned.items():
            key = PARTITION_KEYS[table]
            for day in dates:
                new = output.partition(table, key, day)
                moves[lake.curated_partition(table, key, day)] = new if new.exists() else None
        for day in scope.event_dates:
            for old in lake.points_partitions_of(day):
                moves[old] = None
        for new in output.points_partitions():
            moves[lake.points_partition(*Lake.points_partition_dates(new))] = new
    return {str(f): str(n) if n else None for f, n in moves.items()}


def _build(
    con: duckdb.DuckDBPyConnection, lake: Lake, scope: Scope, out_dir: Path
) -> TransformResult:
    period_ids = _select_periods(con, scope)
    removed = _ids(
        con,
        """select operating_period_id from published_operating_period
           where operating_period_id not in (select operating_period_id from fact_operating_period)
           order by 1""",
    )
    _register_points(con, lake, scope)
    vehicle_dates = _register_vehicle_partitions(con, lake, scope)
    con.sql(f"create table vehicle_periods as {read_sql('fct_vehicle_operating_period')}")
    con.sql(f"create table entity_dates as {read_sql('int_entity_dates')}")
    rows = _write_tables(con, out_dir, scope)
    _write_state(con, lake, out_dir, scope)
    return TransformResult(
        out_dir,
        recomputed_period_ids=period_ids,
        event_dates=scope.event_dates,
        rows=rows,
        source_days=scope.source_days,
        events_files=scope.run_files(lake),
        removed_period_ids=removed,
        moves=_moves(lake, out_dir, scope, vehicle_dates),
        rebuilt=scope.rebuild,
    )


def _say_rebuild(lake: Lake, scope: Scope) -> None:
    if scope.rebuild and any(lake.curated_dir.glob("*/*")):
        run_logger(__name__).warning(
            "lake %s has no incremental state yet (written by an earlier version): building it "
            "once from all %d staged source days; later runs read only what they touch",
            lake.root,
            len(scope.source_days),
        )


def transform(
    lake: Lake,
    source_days: list[dt.date],
    out_dir: Path,
    *,
    memory_limit: str | None = None,
    defer: list[dt.date] = (),  # type: ignore[assignment]
) -> TransformResult:
    """New versions of what a run over ``source_days`` changes, written to out_dir: the
    touched partitions and small whole tables, the warehouse's changed rows and the new state.
    Staged days that were never published are included, except ``defer`` (published later
    by the caller)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scope = plan(lake, sorted(set(source_days)), defer)
    _say_rebuild(lake, scope)
    spill = out_dir / "_spill"
    con = connect(memory_limit, spill)
    try:
        _register_inputs(con, lake, scope)
        return _build(con, lake, scope, out_dir)
    except duckdb.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise TransformError(
            f"building curated tables for {lake.root} failed: {first_line}; "
            "check the staged events Parquet (re-stage the day) and free disk space"
        ) from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


@task(name="build-curated-tables")
def build_curated_tables(
    lake_root: str,
    source_days: list,
    out_dir: str,
    memory_limit: str | None = None,
    defer: list | None = None,
) -> dict:
    """Prefect task: ``transform`` for the given source days; returns TransformResult.to_dict()."""
    days = [_as_date(d) for d in source_days]
    later = [_as_date(d) for d in defer or []]
    result = transform(
        Lake(Path(lake_root)), days, Path(out_dir), memory_limit=memory_limit, defer=later
    )
    return result.to_dict()
