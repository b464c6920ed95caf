"""The analyst catalog: lake.duckdb with views over the lake's Parquet, and read-only queries.

The file is rebuilt aside and renamed into place, so a reader never sees it half-built and an
open reader never blocks a refresh.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
from collections.abc import Sequence
from pathlib import Path

import duckdb

from flows.checkpoints import checkpoint
from flows.errors import VdpError
from flows.lake import CATALOG_SCRATCH, Lake
from flows.locks import catalog_lock
from flows.tables import PARTITION_KEYS, QUARANTINE
from flows.transform import (
    CURATED_SCHEMAS,
    events_select,
    parquet_select,
    read_sql,
)

MAX_CELL = 60


class CatalogError(VdpError):
    """The catalog could not be built or a query over it failed."""


def catalog_views(lake: Lake) -> dict[str, str]:
    """View name -> select, in creation order (later views use earlier ones)."""
    views = {
        "staged_events": events_select([lake.events_glob]),
        "events": read_sql("events_distinct"),
        "quarantine": parquet_select([lake.quarantine_glob], QUARANTINE.schema),
    }
    for table, schema in CURATED_SCHEMAS.items():
        # tolerant: partitions written before a column was declared read it as NULL
        glob = lake.curated_glob(table, PARTITION_KEYS.get(table))
        views[table] = parquet_select([glob], schema, tolerant=True)
    views["avg_distance_per_operating_period"] = read_sql("avg_distance_per_operating_period")
    return views


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def refresh_catalog(lake: Lake) -> None:
    """(Re)create lake.duckdb with a view per zone and table (absolute paths). One refresh at a
    time, which first drops the half-built files of a refresh that was killed."""
    lake.root.mkdir(parents=True, exist_ok=True)
    with catalog_lock(lake):
        lake.sweep_scratch(CATALOG_SCRATCH)
        _rebuild(lake)


def _rebuild(lake: Lake) -> None:
    tmp = lake.scratch_path(CATALOG_SCRATCH, ".duckdb")
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.sql("set TimeZone = 'UTC'")
            for name, select in catalog_views(lake).items():
                con.sql(f"create or replace view {name} as {select}")
            con.sql("checkpoint")
        finally:
            con.close()
        checkpoint("catalog.built")
        _wal(lake.duckdb_path).unlink(missing_ok=True)
        os.replace(tmp, lake.duckdb_path)
    except (duckdb.Error, OSError) as exc:
        raise CatalogError(
            f"could not build {lake.duckdb_path}: {str(exc).splitlines()[0]}; "
            "check that the lake root is writable and its Parquet files are readable"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
        _wal(tmp).unlink(missing_ok=True)


def query(lake: Lake, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL read-only against lake.duckdb (built first if missing): column names and rows."""
    if not lake.root.is_dir():  # a mistyped lake root must not become a new, empty lake
        raise CatalogError(
            f"no lake at {lake.root}: point VDP_LAKE_ROOT (or --lake-root) at the lake, "
            "or run `vdp run` first"
        )
    if not lake.duckdb_path.exists():
        refresh_catalog(lake)
    try:
        con = duckdb.connect(str(lake.duckdb_path), read_only=True)
    except duckdb.Error as exc:
        raise CatalogError(f"cannot open {lake.duckdb_path}: {str(exc).splitlines()[0]}") from exc
    try:
        con.sql("set TimeZone = 'UTC'")
        relation = con.sql(sql)
        if relation is None:
            return [], []
        return list(relation.columns), relation.fetchall()
    except duckdb.Error as exc:
        raise CatalogError(f"query failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return format(value, ".6f").rstrip("0").rstrip(".") if value == value else "NaN"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def format_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table: header, rule, rows (numbers right-aligned), row count."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows)
        and all(isinstance(r[i], int | float | decimal.Decimal) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    body = [line(columns), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]
    count = f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    return "\n".join(body + [count])
