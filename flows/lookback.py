"""Late objects: a daily run re-lists the source days before its own, fetches what arrived
after they were processed, and stages only the days that received something."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import task

from flows.extract import FETCH_TASK_OPTIONS, fetch_day
from flows.lake import Lake, RunOutput
from flows.locks import day_lock
from flows.logs import run_logger
from flows.stage import stage_day
from flows.transform import (
    CURATED_SCHEMAS,
    connect,
    events_select,
    parquet_select,
    read_sql,
)


@dataclass
class LateDay:
    """What the lookback found for one earlier source day."""

    source_day: dt.date
    listed: int = 0
    late_objects: list[str] = field(default_factory=list)
    staged: bool = False
    events: int = 0
    quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "source_day": self.source_day.isoformat()}


def earlier_days(day: dt.date, count: int) -> list[dt.date]:
    """The ``count`` source days before ``day``, oldest first."""
    return [day - dt.timedelta(days=n) for n in range(count, 0, -1)]


def catch_up_day(settings: Any, lake: Lake, day: dt.date) -> LateDay:
    """List an earlier day, fetch its new or changed objects, and re-stage it only when it got
    some (or when a killed run fetched without staging). Holds the day's lake lock."""
    with day_lock(lake, day):
        fetched = fetch_day(settings, lake, day, progress=lambda _: None, write_unchanged=False)
        late = LateDay(day, listed=fetched.listed, late_objects=fetched.fetched_keys)
        if late.late_objects or lake.raw_newer_than_staging(day):
            staged = stage_day(lake, day, memory_limit=settings.duckdb_memory_limit)
            late.staged, late.events, late.quarantined = True, staged.events, staged.quarantined
    return late


@task(name="catch-late-objects", **FETCH_TASK_OPTIONS)
def catch_late_objects(settings: Any, lake_root: str, days: list[dt.date]) -> list[dict]:
    """Prefect task: catch up each lookback day in order; logs one line per day that had news."""
    lake = Lake(Path(lake_root))
    logger = run_logger(__name__)
    found = []
    for day in days:
        late = catch_up_day(settings, lake, day)
        if late.staged:
            logger.info(
                "lookback %s: %d late object(s) %s; re-staged %d events (%d quarantined)",
                day,
                len(late.late_objects),
                ", ".join(late.late_objects[:5]) + (" …" if len(late.late_objects) > 5 else ""),
                late.events,
                late.quarantined,
            )
        found.append(late.as_dict())
    return found


def periods_touched_by(
    lake: Lake, days: list[dt.date], curated_dir: Path, recomputed: list[str]
) -> list[str]:
    """Of the recomputed periods, those that the given source days' events reach (a period
    event, a valid point in the window of one of the period's vehicles, or an overlapping break
    of its organization: flows/sql/late_periods.sql). Reads only those days' staged events and
    the run's curated output."""
    files = [
        str(f) for d in days for p in lake.events_partitions_of(d) for f in p.glob("*.parquet")
    ]
    if not files or not recomputed:
        return []
    fop, fvop = "fact_operating_period", "fact_vehicle_operating_period"
    output = RunOutput(curated_dir)
    views = {
        fop: ([str(output.table(fop) / "*.parquet")], CURATED_SCHEMAS[fop]),
        "changed_vehicle_periods": (
            [str(output.changes(fvop) / "*.parquet")],
            CURATED_SCHEMAS[fvop],
        ),
    }
    con = connect()
    try:
        con.sql(f"create view late_events as {events_select(files)}")
        for name, (paths, schema) in views.items():
            con.sql(f"create view {name} as {parquet_select(paths, schema)}")
        con.execute(
            "create table recomputed as select unnest(?::varchar[]) as operating_period_id",
            [recomputed],
        )
        return [row[0] for row in con.sql(read_sql("late_periods")).fetchall()]
    finally:
        con.close()
