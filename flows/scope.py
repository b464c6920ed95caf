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
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from flows.lake import Lake

Fingerprint = frozenset[tuple[str, dt.date, int, int, int]]
VERSION_FILE = "version.json"
STATE_VERSION = 1  # bump when the state's shape changes: the next run rebuilds it


@dataclass(frozen=True)
class Scope:
    """The source days a run publishes and the event dates it recomputes."""

    source_days: list[dt.date]
    event_dates: list[dt.date]
    staged: dict[dt.date, list[Path]] = field(default_factory=dict)
    rebuild: bool = False  # no incremental state yet: build it from the whole events zone

    def run_files(self) -> list[Path]:
        return [f for d in self.source_days for f in self.staged.get(d, [])]

    def record_rows(self, lake: Lake, previous: pl.DataFrame) -> pl.DataFrame:
        """The new record: the previous rows of other days plus the run's days as staged now."""
        kept = previous.filter(~pl.col("source_day").is_in(self.source_days))
        rows = [_record_row(lake, d, f) for d in self.source_days for f in self.staged.get(d, [])]
        current = pl.DataFrame(rows, schema=RECORD_SCHEMA, orient="row")
        return pl.concat([kept, current]).sort("source_day", "event_date", "file")


RECORD_SCHEMA = {
    "source_day": pl.Date,
    "event_date": pl.Date,
    "file": pl.String,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "inode": pl.Int64,
}


def _record_row(lake: Lake, day: dt.date, path: Path) -> tuple:
    info = path.stat()
    rel = str(path.relative_to(lake.events_dir))
    return (day, lake.event_date_of(path.parent), rel, info.st_size, info.st_mtime_ns, info.st_ino)


def record_path(lake: Lake) -> Path:
    return lake.state_table("source_days") / "part-0.parquet"


def has_state(lake: Lake) -> bool:
    """Whether the lake holds incremental state this version can use."""
    version = lake.state_table("source_days") / VERSION_FILE
    if not version.is_file() or not record_path(lake).is_file():
        return False
    return json.loads(version.read_text()).get("version") == STATE_VERSION


def read_record(lake: Lake) -> pl.DataFrame:
    if not has_state(lake):
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return pl.read_parquet(record_path(lake)).cast(RECORD_SCHEMA)


def _fingerprints(record: pl.DataFrame) -> dict[dt.date, Fingerprint]:
    found: dict[dt.date, set] = {}
    for row in record.iter_rows(named=True):
        key = (row["file"], row["event_date"], row["size"], row["mtime_ns"], row["inode"])
        found.setdefault(row["source_day"], set()).add(key)
    return {d: frozenset(v) for d, v in found.items()}


def _staged_fingerprints(lake: Lake, staged: dict[dt.date, list[Path]]) -> dict:
    return {
        day: frozenset(
            (row[2], row[1], row[3], row[4], row[5])
            for row in (_record_row(lake, day, f) for f in files)
        )
        for day, files in staged.items()
    }


def plan(lake: Lake, days: Iterable[dt.date], defer: Iterable[dt.date] = ()) -> Scope:
    """The scope of a run for ``days``: those days plus the pending ones (except ``defer``,
    days a caller publishes itself later), and every event date their rows had or have."""
    staged = lake.staged_files()
    requested = set(days)
    if not has_state(lake):
        source_days = sorted(requested | set(staged))
        dates = {lake.event_date_of(f.parent) for files in staged.values() for f in files}
        return Scope(source_days, sorted(dates), staged, rebuild=True)
    record = read_record(lake)
    recorded = _fingerprints(record)
    now = _staged_fingerprints(lake, staged)
    pending = {d for d in set(recorded) | set(now) if recorded.get(d) != now.get(d)}
    source_days = sorted(requested | (pending - set(defer)))
    dates = {lake.event_date_of(f.parent) for d in source_days for f in staged.get(d, [])}
    earlier = record.filter(pl.col("source_day").is_in(source_days))["event_date"].to_list()
    return Scope(source_days, sorted(dates | set(earlier)), staged)
