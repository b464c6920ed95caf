"""What a transform run touches: its source days and their event dates, found from a listing of
the events zone and the record of what the last publish saw, never by reading old events.

A source day is *pending* when its staged files differ from the record (staged by a run that
never published, re-staged, or removed); a run publishes the pending days with its own, so a
crashed or stage-only run is caught up by the next one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from flows.lake import Lake

VERSION_FILE = "version.json"
STATE_VERSION = 2  # bump when the state's shape changes: the next run rebuilds it (2: breaks)
RECORD_SCHEMA = {
    "source_day": pl.Date,
    "event_date": pl.Date,
    "file": pl.String,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "inode": pl.Int64,
}
_FINGERPRINT = ("file", "event_date", "size", "mtime_ns", "inode")


@dataclass(frozen=True)
class Scope:
    """The source days a run publishes and the event dates it recomputes."""

    source_days: list[dt.date]
    event_dates: list[dt.date]
    staged: pl.DataFrame  # every staged file now, in the record's schema
    previous: pl.DataFrame  # the record of the last publish (empty for a rebuild)
    rebuild: bool = False  # no incremental state yet: build it from the whole events zone

    def run_files(self, lake: Lake) -> list[Path]:
        """The staged files of the run's source days."""
        mine = self.staged.filter(pl.col("source_day").is_in(self.source_days))
        return [lake.events_dir / name for name in mine["file"]]

    def record(self) -> pl.DataFrame:
        """The new record: the previous rows of other days plus the run's days as staged now."""
        kept = self.previous.filter(~pl.col("source_day").is_in(self.source_days))
        current = self.staged.filter(pl.col("source_day").is_in(self.source_days))
        return pl.concat([kept, current]).sort("source_day", "event_date", "file")


def record_path(lake: Lake) -> Path:
    return lake.state_table("source_days") / "part-0.parquet"


def has_state(lake: Lake) -> bool:
    """Whether the lake holds incremental state this version can use."""
    version = lake.state_table("source_days") / VERSION_FILE
    if not version.is_file() or not record_path(lake).is_file():
        return False
    return json.loads(version.read_text()).get("version") == STATE_VERSION


def _staged(lake: Lake) -> pl.DataFrame:
    """Every staged events file with what identifies its content (a listing and a stat)."""
    rows = []
    for day, files in lake.staged_files().items():
        for path in files:
            info = path.stat()
            name = str(path.relative_to(lake.events_dir))
            event_date = lake.event_date_of(path.parent)
            rows.append((day, event_date, name, info.st_size, info.st_mtime_ns, info.st_ino))
    return pl.DataFrame(rows, schema=RECORD_SCHEMA, orient="row")


def _fingerprints(record: pl.DataFrame) -> dict[dt.date, frozenset]:
    found: dict[dt.date, set] = {}
    for row in record.iter_rows(named=True):
        found.setdefault(row["source_day"], set()).add(tuple(row[c] for c in _FINGERPRINT))
    return {d: frozenset(v) for d, v in found.items()}


def _dates(record: pl.DataFrame, days: list[dt.date]) -> set[dt.date]:
    return set(record.filter(pl.col("source_day").is_in(days))["event_date"].to_list())


def plan(lake: Lake, days: Iterable[dt.date], defer: Iterable[dt.date] = ()) -> Scope:
    """The scope of a run for ``days``: those days plus the pending ones (except ``defer``,
    days a caller publishes itself later), and every event date their rows had or have."""
    staged = _staged(lake)
    requested = set(days)
    if not has_state(lake):
        source_days = sorted(requested | set(staged["source_day"].to_list()))
        previous = pl.DataFrame(schema=RECORD_SCHEMA)
        return Scope(source_days, sorted(_dates(staged, source_days)), staged, previous, True)
    previous = pl.read_parquet(record_path(lake)).cast(RECORD_SCHEMA)
    recorded, now = _fingerprints(previous), _fingerprints(staged)
    pending = {d for d in set(recorded) | set(now) if recorded.get(d) != now.get(d)}
    source_days = sorted(requested | (pending - set(defer)))
    dates = _dates(staged, source_days) | _dates(previous, source_days)
    return Scope(source_days, sorted(dates), staged, previous)
