"""The only place lake paths are built, plus atomic writes and journaled partition swaps.

Every write goes aside (under ``_tmp/``, same filesystem) and is renamed into place. Swapping
several partitions at once is journaled so that a crash mid-swap is rolled back on the next
run instead of leaving a mix of old and new partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.checkpoints import checkpoint
from flows.errors import VdpError

FETCH_TXN = "fetch-"  # journal names of fetches; swap journals never start with it


class LakeError(VdpError):
    """The lake root cannot be used (missing permissions, read-only, full disk)."""


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

    def manifest_path(self, day: dt.date) -> Path:
        """Manifest of fetched objects of a source day; kept outside the raw day so pruning
        raw files never loses the record of what was fetched."""
        return self.raw_dir / "_manifests" / f"source_day={day.isoformat()}.json"

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
        return self.curated_table(table) / f"{key}={value.isoformat()}"

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

    @property
    def duckdb_path(self) -> Path:
        return self.root / "lake.duckdb"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"

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

    def fetch_journal(self, day: dt.date) -> Path:
        """What a fetch of the day is renaming into raw/ before its manifest records it."""
        return self.journal_dir / f"{FETCH_TXN}{day.isoformat()}.json"

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

    @contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A private directory under ``_tmp/`` that is removed on exit, whatever happens."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.tmp_dir / f"{prefix}-{uuid.uuid4().hex[:12]}"
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
class Swap:
    """A journaled replacement of several lake directories.

    ``moves`` maps each final directory to the directory holding its new content, or to
    ``None`` to remove it. ``publish()`` moves the old content to backups and the new content
    into place; ``commit()`` drops the backups; ``rollback()`` puts the old content back.
    """

    lake: Lake
    txn: str
    moves: dict[Path, Path | None]

    @property
    def journal(self) -> Path:
        return self.lake.journal_dir / f"{self.txn}.json"

    def _backup(self, final: Path) -> Path:
        rel = final.relative_to(self.lake.root)
        return self.lake.tmp_dir / f"backup-{self.txn}" / rel

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
        shutil.rmtree(self.lake.tmp_dir / f"backup-{self.txn}", ignore_errors=True)
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
    is_committed: Callable[[str], bool] = lambda txn: False,
    only: Callable[[str], bool] = lambda txn: True,
) -> list[str]:
    """Finish swaps a crashed run left behind: roll forward those ``is_committed`` confirms
    (e.g. the warehouse recorded that load), roll back the others. ``only`` picks the txns the
    caller owns (it holds their lock), so a swap still in flight elsewhere is never undone.
    Returns the txn ids seen."""
    seen = []
    for temp in lake.journal_dir.glob(".*.json.*.tmp"):  # killed before its rename
        txn = (temp_name_target(temp) or "").removesuffix(".json")
        if txn and only(txn):
            temp.unlink(missing_ok=True)
    for journal in sorted(lake.journal_dir.glob("*.json")):
        txn = journal.stem
        if not only(txn):
            continue
        seen.append(txn)
        state = json.loads(journal.read_text())
        swap = Swap(lake, txn, {})
        if state["state"] == "published" and is_committed(txn):
            swap.commit()
        else:
            _undo(lake, state["moves"])
            swap.commit()
    return seen
