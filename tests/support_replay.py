"""Whole-state snapshots for the crash replay: every lake zone and every warehouse table,
hashed, with what varies between two equal runs (wall-clock stamps, run ids, inodes) left out.

A snapshot maps one *part* of the state to ``(rows, digest)``: a raw day, a manifest, a source
day's events or quarantine, a curated table, a state table, the validation reports, a warehouse
table. Files outside the known zones count too (``other/<path>``), so a stray file is a
difference. Not hashed: GX's own store and Data Docs under ``validation/`` (a rendering of the
reports), lock files, lake.duckdb (checked by ``catalog_consistent``) and the leftovers that
``leftovers`` reports.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import psycopg

Snapshot = dict[str, tuple[int, str]]

# columns that differ between two runs of the same data
VOLATILE_COLUMNS = {"ingested_at", "mtime_ns", "inode", "size"}
VOLATILE_WAREHOUSE = {
    "load_audit": {"id", "run_id", "flow_run_id", "started_at", "finished_at"},
    "schema_migrations": {"applied_at"},
}
# docs_pages: Data Docs URLs, which name the lake and the run
VOLATILE_REPORT = {"run_id", "seconds", "timings", "markdown", "docs_pages"}
NOT_HASHED = ["_locks/*", "lake.duckdb", "validation/.lock", "validation/gx/*", "validation/docs/*"]
LEFTOVER_PATTERNS = ["_tmp/*", "_journal/*", "*.tmp", "*.part", "*.wal"]


def digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def _parquet_rows(path: Path) -> list[tuple]:
    frame = pl.read_parquet(path, hive_partitioning=False)
    frame = frame.drop([c for c in VOLATILE_COLUMNS if c in frame.columns])
    return sorted(frame.rows(), key=repr)


def _file_rows(root: Path, rel: str) -> list:
    """A file's content as comparable rows: Parquet rows, normalised JSON, or its bytes' hash
    (raw copies: their bytes are the contract)."""
    path = root / rel
    is_raw = rel.startswith("raw/") and not rel.startswith("raw/_manifests/")
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    if path.suffix == ".json" and not is_raw:
        payload = json.loads(path.read_text())
        if path.parent.name == "_manifests":  # fetched_at is a wall-clock stamp
            return sorted((k, e["name"], e["size"], e["etag"]) for k, e in payload.items())
        if path.parent.name == "runs":  # a validation report: its run id and timings vary
            return [json.dumps({k: v for k, v in payload.items() if k not in VOLATILE_REPORT})]
        return [json.dumps(payload, sort_keys=True)]
    return [hashlib.sha256(path.read_bytes()).hexdigest()]


def _part(rel: str) -> str:
    """The part of the state a file belongs to (see the module docstring)."""
    parts = rel.split("/")
    zone = parts[0]
    if zone == "raw" and parts[1] == "_manifests":
        return rel
    if zone == "raw":
        return f"raw/{parts[1]}"
    if zone in ("events", "quarantine"):
        day = next(p for p in parts if p.startswith("source_day="))
        return f"{zone}/{day}"
    if zone in ("curated", "state"):
        return f"{zone}/{parts[1]}"
    if rel.startswith("validation/runs/"):
        return "validation/runs"
    return f"other/{rel}"


def _matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _files(root: Path) -> list[str]:
    """Every file under the lake root (not the embedded warehouse's data directory)."""
    found = []
    for base, dirs, files in os.walk(root):
        rel_base = os.path.relpath(base, root)
        if rel_base == ".":
            dirs[:] = [d for d in dirs if d != "warehouse"]
        found += [os.path.normpath(os.path.join(rel_base, f)) for f in files]
    return sorted(found)


def leftovers(root: Path) -> list[str]:
    """Every temporary, journal or scratch file anywhere under the lake root."""
    return [rel for rel in _files(root) if _matches(rel, LEFTOVER_PATTERNS)]


def lake_snapshot(root: Path) -> Snapshot:
    """Every part of the lake (leftovers and unhashed files aside), as (rows, digest)."""
    grouped: dict[str, list] = {}
    for rel in _files(root):
        if _matches(rel, LEFTOVER_PATTERNS) or _matches(rel, NOT_HASHED):
            continue
        grouped.setdefault(_part(rel), []).append((rel, _file_rows(root, rel)))
    out = {}
    for part, files in grouped.items():
        if part == "validation/runs":  # one report per run: compare them as a set
            files = sorted({rows[0] for _, rows in files})
            out[part] = (len(files), digest(files))
            continue
        out[part] = (sum(len(rows) for _, rows in files), digest(sorted(files)))
    return out


def warehouse_snapshot(url: str) -> Snapshot:
    """Every table of the warehouse schema (partitions through their parent), as (rows, digest)."""
    with psycopg.connect(url) as conn:
        conn.execute("set time zone 'UTC'")
        tables = conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'warehouse' and c.relkind in ('r', 'p')"
            " and not c.relispartition order by 1"
        ).fetchall()
        out = {}
        for (table,) in tables:
            cursor = conn.execute(f"select * from warehouse.{table}")  # noqa: S608
            names = [d.name for d in cursor.description]
            keep = [i for i, n in enumerate(names) if n not in VOLATILE_WAREHOUSE.get(table, ())]
            rows = sorted((tuple(r[i] for i in keep) for r in cursor.fetchall()), key=repr)
            out[f"warehouse/{table}"] = (len(rows), digest(rows))
    return out


def snapshot(root: Path, url: str) -> Snapshot:
    return {**lake_snapshot(root), **warehouse_snapshot(url)}


def differences(got: Snapshot, want: Snapshot) -> list[str]:
    """The parts where two snapshots differ, each with both row counts."""
    return [
        f"{part}: {got.get(part, ('absent',))[0]} rows, want {want.get(part, ('absent',))[0]}"
        for part in sorted(set(got) | set(want))
        if got.get(part) != want.get(part)
    ]


def catalog_counts(catalog: Path) -> dict[str, int]:
    """Row count of every view in a lake.duckdb."""
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        listed = con.sql("select view_name from duckdb_views() where not internal").fetchall()
        views = [name for (name,) in listed]
        return {v: con.execute(f'select count(*) from "{v}"').fetchone()[0] for v in sorted(views)}
    finally:
        con.close()


def catalog_consistent(root: Path) -> list[str]:
    """Views of the lake's lake.duckdb whose row counts differ from a catalog built afresh over
    the same lake (a stale, half-built or missing catalog shows up here)."""
    from flows.catalog import catalog_views
    from flows.lake import Lake

    if not (root / "lake.duckdb").is_file():
        return ["lake.duckdb is missing"]
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "fresh.duckdb"
        con = duckdb.connect(str(fresh))
        con.sql("set TimeZone = 'UTC'")
        for name, select in catalog_views(Lake(root)).items():
            con.sql(f"create or replace view {name} as {select}")
        con.close()
        want = catalog_counts(fresh)
    got = catalog_counts(root / "lake.duckdb")
    return [f"{v}: {got.get(v)} rows, want {n}" for v, n in want.items() if got.get(v) != n]


def copy_lake(src: Path, dst: Path) -> None:
    """A copy of a lake that the transform sees as the same lake: staged events files are hard
    links (same inode and mtime, which the state's record of what was published keys on);
    every other file is copied, since GX and the catalog rewrite theirs."""

    def copy(source: str, target: str) -> None:
        if f"{os.sep}events{os.sep}" in source:
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    shutil.copytree(src, dst, copy_function=copy, symlinks=True)


def day_of(part: str) -> dt.date | None:
    """The source day of a raw, manifest, events or quarantine part."""
    if "source_day=" not in part:
        return None
    return dt.date.fromisoformat(part.split("source_day=")[1][:10])
