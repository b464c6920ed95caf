"""The only place lake paths are built, plus the manifest, atomic writes and journaled swaps.

Every write goes aside (under ``_tmp/``, same filesystem) and is renamed into place. Swapping
several partitions at once is journaled so that a crash mid-swap is rolled back on the next
run instead of leaving a mix of old and new partitions. Each journal belongs to one kind of
transaction (``Txn``): the holder of that kind's lock is the only one who may recover it.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.checkpoints import checkpoint
from flows.errors import VdpError

PART_SUFFIX = ".part"  # a download in progress: ``raw/source_day=D/.<name>.<hex>.part``
PUBLISH_SCRATCH = "run"  # _tmp/run-<run id>-*: a publish's transform output and load copy
CATALOG_SCRATCH = "catalog"  # _tmp/catalog-*.duckdb: a catalog refresh being built
RESTORE_SCRATCH = "restore"  # _tmp/restore-*: a restore's extracted backup and lake copies
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class LakeError(VdpError):
    """The lake root cannot be used (missing permissions, read-only, full disk, a corrupt
    manifest)."""


def partition_name(key: str, value: dt.date) -> str:
    """A hive partition directory name, e.g. ``event_date=2019-06-01``."""
    return f"{key}={value.isoformat()}"


class TxnKind(enum.Enum):
    """Who journals a transaction, and so which lock guards it and who may recover it."""

    FETCH = "fetch"  # raw copies renamed in before the manifest records them (the day's lock)
    STAGE = "stage"  # a source day's events and quarantine partitions (the day's lock)
    PUBLISH = "publish"  # the curated tables and state a run publishes (the publish lock)


@dataclass(frozen=True)
class Txn:
    """One journaled transaction: its kind, the source day of a fetch or staging, and an id
    (the run id of a publish). ``name`` is its journal's stem and its backups' suffix."""

    kind: TxnKind
    id: str = ""
    day: dt.date | None = None

    @property
    def name(self) -> str:
        if self.kind is TxnKind.PUBLISH:
            return self.id
        parts = [self.kind.value, self.day.isoformat() if self.day else "", self.id]
        return "-".join(p for p in parts if p)

    @classmethod
    def parse(cls, name: str) -> Txn:
        """The transaction whose ``name`` this is: a journal's stem, or a staging's scratch."""
        for kind in (TxnKind.FETCH, TxnKind.STAGE):
            rest = name.removeprefix(f"{kind.value}-")
            if rest != name:
                found = _DAY.match(rest)
                day = dt.date.fromisoformat(found.group()) if found else None
                return cls(kind, rest[found.end() :].removeprefix("-") if found else rest, day)
        return cls(TxnKind.PUBLISH, name)


@dataclass(frozen=True)
class Lake:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # zones -------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    def raw_day(self, day: dt.date) -> Path:
        return self.raw_dir / f"source_day={day.isoformat()}"

    def raw_days(self) -> list[dt.date]:
        """Every source day with a raw directory, oldest first."""
        days = []
        for path in self.raw_dir.glob("source_day=*"):
            value = path.name.removeprefix("source_day=")
            if path.is_dir() and _DAY.fullmatch(value):
                days.append(dt.date.fromisoformat(value))
        return sorted(days)

    @property
    def manifests_dir(self) -> Path:
        """Kept outside the raw days so pruning raw files never loses the record of what was
        fetched."""
        return self.raw_dir / "_manifests"

    def manifest_path(self, day: dt.date) -> Path:
        """Manifest of fetched objects of a source day (read and written by ``Manifest``)."""
        return self.manifests_dir / f"source_day={day.isoformat()}.json"

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    def events_partition(self, event_date: dt.date, source_day: dt.date) -> Path:
        return (
            self.events_dir
            / f"date={event_date.isoformat()}"
            / f"source_day={source_day.isoformat()}"
        )

    def events_partitions_of(self, source_day: dt.date) -> list[Path]:
        """Every events partition that one source day produced."""
        return sorted(self.events_dir.glob(f"date=*/source_day={source_day.isoformat()}"))

    @property
    def events_glob(self) -> str:
        return str(self.events_dir / "date=*" / "source_day=*" / "*.parquet")

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def quarantine_day(self, day: dt.date) -> Path:
        return self.quarantine_dir / f"source_day={day.isoformat()}"

    def raw_newer_than_staging(self, day: dt.date) -> bool:
        """Whether the day has a raw file fetched after its last staging (or was never staged
        at all): a run killed between fetch and stage leaves one. Staging always writes the
        day's quarantine file after reading the raw files, so its time marks the staging."""
        raw = [p for p in self.raw_day(day).glob("*") if p.is_file() and not p.name.startswith(".")]
        if not raw:
            return False
        marks = list(self.quarantine_day(day).glob("*.parquet"))
        if not marks:
            return True
        staged_at = min(p.stat().st_mtime_ns for p in marks)
        return max(p.stat().st_mtime_ns for p in raw) > staged_at

    def quarantine_days(self) -> dict[dt.date, Path]:
        """Every staged source day's quarantine partition, oldest first."""
        parts = sorted(p for p in self.quarantine_dir.glob("source_day=*") if p.is_dir())
        return {dt.date.fromisoformat(p.name.removeprefix("source_day=")): p for p in parts}

    @property
    def quarantine_glob(self) -> str:
        return str(self.quarantine_dir / "source_day=*" / "*.parquet")

    @property
    def curated_dir(self) -> Path:
        return self.root / "curated"

    def curated_table(self, table: str) -> Path:
        return self.curated_dir / table

    def curated_partition(self, table: str, key: str, value: dt.date) -> Path:
        """A date partition of a curated table, e.g. ``event_date=2019-06-01``."""
        return self.curated_table(table) / partition_name(key, value)

    def curated_glob(self, table: str, partition_key: str | None = None) -> str:
        """The Parquet files of a curated table, whole or partitioned by ``partition_key``."""
        parts = [f"{partition_key}=*"] if partition_key else []
        return str(self.curated_table(table).joinpath(*parts, "*.parquet"))

    @property
    def state_dir(self) -> Path:
        """Incremental state the transform keeps beside the curated tables (not for analysts):
        derived from the events zone, rebuilt from it when missing."""
        return self.root / "state"

    def state_table(self, name: str) -> Path:
        return self.state_dir / name

    def points_partition(self, location_date: dt.date, event_date: dt.date) -> Path:
        return (
            self.state_table("location_points")
            / f"location_date={location_date.isoformat()}"
            / f"event_date={event_date.isoformat()}"
        )

    def points_partitions_of(self, event_date: dt.date) -> list[Path]:
        """Every location-points partition that events of one event date produced."""
        pattern = f"location_date=*/event_date={event_date.isoformat()}"
        return sorted(self.state_table("location_points").glob(pattern))

    def points_partitions_at(self, location_date: dt.date) -> dict[dt.date, Path]:
        """Every location-points partition of points located on one date, by event date."""
        root = self.state_table("location_points") / f"location_date={location_date.isoformat()}"
        return {self.points_partition_dates(p)[1]: p for p in sorted(root.glob("event_date=*"))}

    @staticmethod
    def points_partition_dates(partition: Path) -> tuple[dt.date, dt.date]:
        """(location date, event date) of a partition ``location_date=L/event_date=E``."""
        located = partition.parent.name.removeprefix("location_date=")
        dated = partition.name.removeprefix("event_date=")
        return dt.date.fromisoformat(located), dt.date.fromisoformat(dated)

    def staged_files(self) -> dict[dt.date, list[Path]]:
        """Every staged events file, by the source day that produced it (a listing only)."""
        found: dict[dt.date, list[Path]] = {}
        for path in sorted(self.events_dir.glob("date=*/source_day=*/*.parquet")):
            day = dt.date.fromisoformat(path.parent.name.removeprefix("source_day="))
            found.setdefault(day, []).append(path)
        return found

    @staticmethod
    def event_date_of(partition: Path) -> dt.date:
        """The event date of an events partition ``date=E/source_day=D``."""
        return dt.date.fromisoformat(partition.parent.name.removeprefix("date="))

    def events_partitions_on(self, event_date: dt.date) -> list[Path]:
        """Every source day's events partition of one event date."""
        return sorted(self.events_dir.glob(f"date={event_date.isoformat()}/source_day=*"))

    def events_date_dirs(self) -> list[Path]:
        """Every event date's directory ``events/date=E`` that holds staged files, oldest first."""
        return sorted(p for p in self.events_dir.glob("date=*") if any(p.glob("*/*.parquet")))

    @property
    def duckdb_path(self) -> Path:
        return self.root / "lake.duckdb"

    @property
    def validation_dir(self) -> Path:
        """The Great Expectations project: stored results, Data Docs, run reports."""
        return self.root / "validation"

    @property
    def validation_lock(self) -> Path:
        return self.validation_dir / ".lock"

    @property
    def validation_docs_dir(self) -> Path:
        return self.validation_dir / "docs"

    @property
    def validation_runs_dir(self) -> Path:
        return self.validation_dir / "runs"

    def validation_report(self, run_id: str) -> Path:
        return self.validation_runs_dir / f"{run_id}.json"

    @property
    def backup_dirs(self) -> tuple[Path, ...]:
        """What a backup copies besides the warehouse: the manifests (so a restored lake
        fetches nothing twice), the curated tables and the transform's state."""
        return (self.manifests_dir, self.curated_dir, self.state_dir)

    @property
    def warehouse_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL (used when no warehouse URL is set)."""
        return self.root / "warehouse"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "_tmp"

    @property
    def journal_dir(self) -> Path:
        return self.root / "_journal"

    def journal(self, txn: Txn) -> Path:
        return self.journal_dir / f"{txn.name}.json"

    def journal_temps(self) -> dict[Path, Txn]:
        """Journal temporaries a writer killed before their rename left, by transaction."""
        temps = {}
        for temp in self.journal_dir.glob(".*.json.*.tmp"):
            name = (temp_name_target(temp) or "").removesuffix(".json")
            if name:
                temps[temp] = Txn.parse(name)
        return temps

    def swap_backups(self, txn: Txn) -> Path:
        """Where a swap keeps the old content it replaced until it commits."""
        return self.tmp_dir / f"backup-{txn.name}"

    def fetch_journal(self, day: dt.date) -> Path:
        """What a fetch of the day is renaming into raw/ before its manifest records it."""
        return self.journal(Txn(TxnKind.FETCH, day=day))

    @property
    def locks_dir(self) -> Path:
        return self.root / "_locks"

    def lock_path(self, name: str) -> Path:
        return self.locks_dir / f"{name}.lock"

    # safety ------------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Fail early, in one line, when the lake root cannot take writes."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
            probe = self.tmp_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise LakeError(
                f"lake root {self.root} is not writable: {exc.strerror or exc}"
            ) from exc

    def sweep_scratch(self, prefix: str) -> int:
        """Remove scratch directories and files ``_tmp/<prefix>-*`` that a killed run left
        behind. Call it only while holding the lock that guards every user of that prefix."""
        stale = list(self.tmp_dir.glob(f"{prefix}-*"))
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return len(stale)

    def scratch_path(self, prefix: str, suffix: str = "") -> Path:
        """A new, unused name ``_tmp/<prefix>-<random><suffix>`` (not created)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{prefix}-{uuid.uuid4().hex[:12]}{suffix}"

    @contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A private directory under ``_tmp/`` that is removed on exit, whatever happens."""
        path = self.scratch_path(prefix)
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        checkpoint("write.temp_written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temp_name_target(temp: Path) -> str | None:
    """The file name an ``atomic_write_bytes`` temporary was meant to become, or None."""
    name = temp.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    target, _, stamp = name[1:].removesuffix(".tmp").rpartition(".")
    return target if target and len(stamp) == 8 else None


def sweep_temp_files(directory: Path, target_prefix: str = "") -> int:
    """Remove temporaries of atomic writes into ``directory`` (whose target name starts with
    ``target_prefix``) that a killed writer left; hold the lock that guards those writes."""
    count = 0
    for path in directory.glob(".*.tmp"):
        target = temp_name_target(path)
        if target is not None and target.startswith(target_prefix):
            path.unlink(missing_ok=True)
            count += 1
    return count


def atomic_write_json(path: Path, payload: object) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


@dataclass
class Manifest:
    """A source day's record of fetched objects (``Lake.manifest_path``): object key ->
    {name, size, etag, fetched_at, and pruned_at once `vdp prune` removed the raw copy}.

    The only reader and writer of manifests, with one error policy: a missing manifest is
    empty (nothing fetched yet); one that cannot be read or is not a JSON object of entries
    raises LakeError. Manifests are written atomically, so that means damage from outside the
    pipeline, and reading it as empty would silently re-fetch pruned objects and give staged
    rows other source keys.
    """

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, lake: Lake, day: dt.date) -> Manifest:
        path = lake.manifest_path(day)
        try:
            payload = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):  # nothing fetched yet
            return cls(path)
        except (OSError, ValueError) as exc:
            raise cls._corrupt(path, str(exc)) from None
        if not isinstance(payload, dict) or not all(isinstance(e, dict) for e in payload.values()):
            raise cls._corrupt(path, "not a JSON object of entries")
        return cls(path, payload)

    @staticmethod
    def _corrupt(path: Path, reason: str) -> LakeError:
        return LakeError(
            f"manifest {path} is unreadable ({reason}): restore it from a backup "
            "(`vdp restore`), or delete it to fetch the source day again"
        )

    @staticmethod
    def name_of(key: str, entry: dict[str, Any]) -> str:
        """The raw file name of an entry (manifests before names were recorded: the key's)."""
        return entry.get("name") or key.rsplit("/", 1)[-1]

    def keys_by_name(self) -> dict[str, str]:
        """Object key per raw file name."""
        return {self.name_of(key, entry): key for key, entry in self.entries.items()}

    def pruned_missing(self, present: set[str]) -> list[str]:
        """Keys of entries `vdp prune` removed whose raw file is not in ``present``."""
        return [
            key
            for key, entry in self.entries.items()
            if entry.get("pruned_at") and self.name_of(key, entry) not in present
        ]

    def write(self) -> None:
        try:
            atomic_write_json(self.path, self.entries)
        except OSError as exc:
            raise LakeError(f"cannot write manifest {self.path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class RunOutput:
    """What a transform run writes under its scratch directory and a publish swaps in: the
    curated tables laid out as under ``curated/``, the rows the warehouse must receive under
    ``_changes/`` and the new incremental state laid out as ``state/`` under ``_state/``."""

    root: Path

    def table(self, table: str) -> Path:
        return self.root / table

    def partition(self, table: str, key: str, value: dt.date) -> Path:
        return self.table(table) / partition_name(key, value)

    def changes(self, table: str) -> Path:
        return self.root / "_changes" / table

    def state_table(self, name: str) -> Path:
        return self.root / "_state" / name

    def points_partitions(self) -> list[Path]:
        """The new location-points partitions ``location_date=L/event_date=E``."""
        return sorted(self.state_table("location_points").glob("location_date=*/event_date=*"))


@dataclass
class Swap:
    """A journaled replacement of several lake directories.

    ``moves`` maps each final directory to the directory holding its new content, or to
    ``None`` to remove it. ``publish()`` moves the old content to backups and the new content
    into place; ``commit()`` drops the backups; ``rollback()`` puts the old content back.
    """

    lake: Lake
    txn: Txn
    moves: dict[Path, Path | None]

    @property
    def journal(self) -> Path:
        return self.lake.journal(self.txn)

    def _backup(self, final: Path) -> Path:
        rel = final.relative_to(self.lake.root)
        return self.lake.swap_backups(self.txn) / rel

    def _entries(self, existing: set[Path]) -> list[dict[str, object]]:
        return [
            {
                "final": str(f),
                "new": str(n) if n else None,
                "backup": str(self._backup(f)),
                "had_old": f in existing,
            }
            for f, n in self.moves.items()
        ]

    def publish(self) -> None:
        existing = {f for f in self.moves if f.exists()}
        entries = self._entries(existing)
        atomic_write_json(self.journal, {"state": "prepared", "moves": entries})
        checkpoint("swap.journal_prepared")
        for moved, (final, new) in enumerate(self.moves.items()):
            backup = self._backup(final)
            if final.exists():
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(final, backup)
            if moved == 0:
                checkpoint("swap.partly_moved")
            if new is not None:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(new, final)
        atomic_write_json(self.journal, {"state": "published", "moves": entries})
        checkpoint("swap.published")

    def commit(self) -> None:
        shutil.rmtree(self.lake.swap_backups(self.txn), ignore_errors=True)
        checkpoint("swap.backups_dropped")
        self.journal.unlink(missing_ok=True)

    def rollback(self) -> None:
        _undo(self.lake, json.loads(self.journal.read_text())["moves"])
        self.commit()


def _undo(lake: Lake, entries: list[dict]) -> None:
    for entry in entries:
        final, backup = Path(entry["final"]), Path(entry["backup"])
        new = Path(entry["new"]) if entry["new"] else None
        # an old content whose backup is gone was already put back by an interrupted undo
        restored = entry.get("had_old") and not backup.exists()
        moved_in = new is not None and not new.exists() and final.exists() and not restored
        if moved_in or (new is None and backup.exists() and final.exists()):
            shutil.rmtree(final, ignore_errors=True)
        if backup.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(backup, final)


def recover(
    lake: Lake,
    kind: TxnKind,
    is_committed: Callable[[str], bool] = lambda txn: False,
    day: dt.date | None = None,
) -> list[str]:
    """Finish the swaps of ``kind`` (and of ``day``, when given) that a crashed run left:
    roll forward those ``is_committed`` confirms (e.g. the warehouse recorded that load), roll
    back the others. The caller holds the lock of those swaps, so a swap of another kind or
    day, which may still be in flight elsewhere, is never touched. Returns the txn names seen."""

    def mine(txn: Txn) -> bool:
        return txn.kind is kind and (day is None or txn.day == day)

    for temp, txn in lake.journal_temps().items():  # killed before its rename
        if mine(txn):
            temp.unlink(missing_ok=True)
    seen = []
    for journal in sorted(lake.journal_dir.glob("*.json")):
        txn = Txn.parse(journal.stem)
        if not mine(txn):
            continue
        seen.append(txn.name)
        state = json.loads(journal.read_text())
        swap = Swap(lake, txn, {})
        if state["state"] == "published" and is_committed(txn.name):
            swap.commit()
        else:
            _undo(lake, state["moves"])
            swap.commit()
    return seen
