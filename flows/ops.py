"""Operations: back up and restore the warehouse and the lake's state, prune staged raw files.

A backup holds a pg_dump (custom format) of schema ``warehouse`` plus the lake's manifests
and curated tables, so a restore gives the same answer and a re-run fetches nothing twice.
Database passwords go to pg_dump/pg_restore through PGPASSWORD, never on their command line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from flows.errors import VdpError
from flows.lake import RESTORE_SCRATCH, Lake, Manifest, atomic_write_json
from flows.locks import day_lock, publish_lock
from flows.warehouse import MIGRATIONS_DIR, connect, describe_error, redact

DUMP_NAME = "warehouse.dump"
META_NAME = "backup.json"
FORMAT_VERSION = 1
TOOL_TIMEOUT_S = 3600
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


class OpsError(VdpError):
    """A backup, restore or prune cannot be done; the message says what to do instead."""


# PostgreSQL client tools ----------------------------------------------------------------------
def _tool_candidates(name: str) -> list[Path]:
    """pgserver's bundled tools first (they match the embedded server), then the system's."""
    import pgserver

    found = [Path(pgserver.__file__).parent / "pginstall" / "bin" / name]
    found += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    on_path = shutil.which(name)
    found += [Path(on_path)] if on_path else []
    return [p for p in found if p.is_file() and os.access(p, os.X_OK)]


def _tool_major(path: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def find_tool(name: str, server_major: int) -> tuple[Path, int]:
    """The client tool matching the server's major version, else the oldest newer one
    (pg_dump refuses servers newer than itself; pg_restore reads older archives)."""
    versions = [(major, path) for path in _tool_candidates(name) if (major := _tool_major(path))]
    usable = sorted((m, p) for m, p in versions if m >= server_major)
    if not usable:
        have = ", ".join(f"{p} ({m})" for m, p in versions) or "none"
        raise OpsError(
            f"no {name} for PostgreSQL {server_major} or newer (found: {have}); "
            f"install postgresql-client-{server_major}"
        )
    major, path = usable[0]
    return path, major


def _server_major(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute("show server_version_num").fetchone()
    return int(row[0]) // 10000 if row else 0


def _run_tool(tool: Path, args: list[str], url: str, what: str) -> None:
    """Run a client tool against ``url``; the password travels in PGPASSWORD only."""
    params = conninfo.conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if password:
        env["PGPASSWORD"] = str(password)
    dsn = conninfo.make_conninfo(**params)
    try:
        done = subprocess.run(
            [str(tool), f"--dbname={dsn}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=TOOL_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise OpsError(f"{what} failed to run {tool.name}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        if password:
            reason = reason.replace(str(password), "***")
        raise OpsError(f"{what} failed at {redact(url)}: {reason}")


# backup -----------------------------------------------------------------------------------------
@dataclass
class BackupSummary:
    path: Path
    tables: dict[str, int] = field(default_factory=dict)
    lake_files: int = 0
    pg_dump: str = ""


def _table_rows(url: str) -> dict[str, int]:
    """Row counts of the warehouse tables (recorded in the backup, checked after restore)."""
    with connect(url) as conn:
        # Partitions are counted through their parent (fact_vehicle_event, migration 004).
        names = conn.execute(
            "select relname from pg_class where relnamespace = to_regnamespace('warehouse') "
            "and relkind in ('r', 'p') and not relispartition order by 1"
        ).fetchall()
        if not names:
            raise OpsError(f"the warehouse at {redact(url)} has no tables: nothing to back up")
        counts = {}
        for (name,) in names:
            query = sql.SQL("select count(*) from {}").format(sql.Identifier("warehouse", name))
            counts[name] = conn.execute(query).fetchone()[0]
    return counts


def _lake_dirs(lake: Lake) -> list[Path]:
    """The lake directories a backup holds, relative to the lake root."""
    return [path.relative_to(lake.root) for path in lake.backup_dirs]


def _copy_lake(lake: Lake, dest: Path) -> int:
    """Copy manifests and curated tables into ``dest/lake``; returns the number of files."""
    files = 0
    for rel in _lake_dirs(lake):
        src = lake.root / rel
        if src.is_dir():
            shutil.copytree(src, dest / "lake" / rel)
            files += sum(1 for p in (dest / "lake" / rel).rglob("*") if p.is_file())
    return files


def _finish(staging: Path, out: Path) -> None:
    """Move the finished backup into place: a directory, or a .tar written aside."""
    if out.suffix == ".tar":
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with tarfile.open(tmp, "w") as archive:
                archive.add(staging, arcname=".")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        os.replace(staging, out)


def backup(url: str, lake: Lake, out: Path) -> BackupSummary:
    """Write the warehouse dump, manifests and curated tables into ``out`` (a new directory
    or a ``.tar`` file), holding the publish lock so lake and warehouse match."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise OpsError(f"backup target {out} already exists: choose a new path")
    tool, major = find_tool("pg_dump", _server_major(url))
    summary = BackupSummary(out, pg_dump=f"{tool} ({major})")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    try:
        with publish_lock(lake):
            summary.tables = _table_rows(url)
            args = ["--format=custom", "--schema=warehouse", f"--file={staging / DUMP_NAME}"]
            _run_tool(tool, args, url, "pg_dump")
            summary.lake_files = _copy_lake(lake, staging)
        meta = {
            "format_version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "pg_dump_major": major,
            "tables": summary.tables,
            "lake_dirs": [str(rel) for rel in _lake_dirs(lake)],
        }
        atomic_write_json(staging / META_NAME, meta)
        if out.is_dir():
            out.rmdir()
        _finish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


# restore ----------------------------------------------------------------------------------------
@dataclass
class RestoreSummary:
    tables: dict[str, int]
    lake_files: int


def _open_backup(src: Path, scratch: Path) -> Path:
    """The backup's directory: ``src`` itself, or a .tar extracted safely into ``scratch``."""
    if src.is_dir():
        return src
    if src.is_file() and tarfile.is_tarfile(src):
        with tarfile.open(src) as archive:
            archive.extractall(scratch, filter="data")
        return scratch
    raise OpsError(f"backup {src} is neither a backup directory nor a .tar file")


def _read_meta(root: Path) -> dict:
    try:
        meta = json.loads((root / META_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise OpsError(f"{root} is not a vdp backup ({META_NAME} unreadable: {exc})") from None
    if meta.get("format_version") != FORMAT_VERSION or not (root / DUMP_NAME).is_file():
        raise OpsError(f"{root} is not a complete vdp backup of format {FORMAT_VERSION}")
    return meta


def _require_empty(url: str, lake: Lake) -> None:
    """Restore never overwrites: no warehouse schema, no manifests or curated tables yet."""
    with connect(url) as conn:
        found = conn.execute("select to_regnamespace('warehouse')").fetchone()
    if found and found[0] is not None:
        raise OpsError(
            f"the database at {redact(url)} already has a schema 'warehouse': restore into an "
            "empty database (create one and set VDP_WAREHOUSE_URL to it)"
        )
    for target in lake.backup_dirs:
        if target.is_dir() and any(target.iterdir()):
            raise OpsError(f"{target} is not empty: restore into a new lake root")


def _reapply_grants(url: str) -> None:
    """Privileges are not restored (the roles may not exist there); the roles migration is
    idempotent, so running it again gives the target the same roles and grants."""
    with connect(url) as conn:
        for path in sorted(MIGRATIONS_DIR.glob("*_roles.sql")):
            try:
                conn.execute(path.read_text())
            except psycopg.Error as exc:
                message = describe_error(exc)
                raise OpsError(f"restored, but granting roles failed: {message}") from None


def _restore_lake(root: Path, lake: Lake) -> int:
    files = 0
    for rel in _lake_dirs(lake):
        src = root / "lake" / rel
        if not src.is_dir():
            continue
        target = lake.root / rel
        aside = lake.scratch_path(RESTORE_SCRATCH)
        shutil.copytree(src, aside)
        files += sum(1 for p in aside.rglob("*") if p.is_file())
        if target.is_dir():
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(aside, target)
    return files


def restore(url: str, lake: Lake, src: Path) -> RestoreSummary:
    """Restore a backup into an empty warehouse and lake; checks the restored row counts."""
    from flows.catalog import refresh_catalog

    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise OpsError(f"backup {src} does not exist")
    lake.ensure_writable()
    with lake.scratch(RESTORE_SCRATCH) as scratch, publish_lock(lake):
        root = _open_backup(src, scratch)
        meta = _read_meta(root)
        _require_empty(url, lake)
        need = max(_server_major(url), int(meta.get("pg_dump_major", 0)))
        tool, _ = find_tool("pg_restore", need)
        args = ["--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges"]
        _run_tool(tool, [*args, str(root / DUMP_NAME)], url, "pg_restore")
        _reapply_grants(url)
        tables = _table_rows(url)
        if tables != meta.get("tables"):
            raise OpsError(
                f"restored row counts {tables} differ from the backup's {meta['tables']}"
            )
        files = _restore_lake(root, lake)
    refresh_catalog(lake)
    return RestoreSummary(tables, files)


# retention --------------------------------------------------------------------------------------
@dataclass
class PruneSummary:
    cutoff: dt.date
    removed: list[Path] = field(default_factory=list)
    kept_unstaged: list[Path] = field(default_factory=list)
    bytes_removed: int = 0


def _staged_at_ns(lake: Lake, day: dt.date) -> int | None:
    """When the day was last staged: the oldest file of its quarantine and events partitions
    (staging always writes the quarantine, even empty), or None if it never was."""
    parts = [lake.quarantine_day(day), *lake.events_partitions_of(day)]
    files = [f for part in parts for f in part.glob("*.parquet")]
    return min(f.stat().st_mtime_ns for f in files) if files else None


def _prunable(lake: Lake, day: dt.date, manifest: Manifest) -> tuple[list[tuple[str, Path]], list]:
    """(manifest key, path) of raw files staged after they were fetched; and the others."""
    by_name = manifest.keys_by_name()
    staged = _staged_at_ns(lake, day)
    ok, kept = [], []
    for path in sorted(lake.raw_day(day).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        key, stat = by_name.get(path.name), path.stat()
        entry = manifest.entries.get(key) if key else None
        if entry and staged and stat.st_mtime_ns <= staged and entry.get("size") == stat.st_size:
            ok.append((key, path))
        else:
            kept.append(path)
    return ok, kept


def _prune_day(lake: Lake, day: dt.date, summary: PruneSummary) -> None:
    """Mark the day's staged files as pruned in the manifest (so they are not fetched again),
    then delete them; unstaged or unlisted files are kept."""
    manifest = Manifest.read(lake, day)
    ok, kept = _prunable(lake, day, manifest)
    summary.kept_unstaged += kept
    if not ok:
        return
    stamp = dt.datetime.now(dt.UTC).isoformat()
    for key, _ in ok:
        manifest.entries[key]["pruned_at"] = stamp
    manifest.write()
    for _, raw in ok:
        summary.bytes_removed += raw.stat().st_size
        raw.unlink()
        summary.removed.append(raw)


def prune_raw(lake: Lake, older_than_days: int, today: dt.date | None = None) -> PruneSummary:
    """Remove raw files of source days before today - ``older_than_days`` that are staged;
    never a file that staging has not read. Manifests are kept."""
    if older_than_days < 0:
        raise OpsError(f"--raw-older-than must be 0 or more days, not {older_than_days}")
    cutoff = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=older_than_days)
    summary = PruneSummary(cutoff)
    for day in lake.raw_days():
        if day < cutoff:
            with day_lock(lake, day):
                _prune_day(lake, day, summary)
    return summary
