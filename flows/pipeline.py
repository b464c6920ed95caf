"""Flows only: wire fetch, stage and publish (transform, validate, load) into Prefect flows."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

from prefect import flow, task
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.extract import fetch_new_objects, list_source_objects
from flows.feed import require_days, require_objects
from flows.lake import Lake
from flows.locks import day_lock
from flows.lookback import catch_late_objects, earlier_days
from flows.publish import publish_days
from flows.report import publish_run_artifacts
from flows.scale import day_slots, timeout_where_enforced
from flows.settings import Settings, get_settings
from flows.stage import raw_files, stage_source_day
from flows.validate import ValidationFailed, prewarm

Day = dt.date


def processing_day(date: Day | None) -> Day:
    """The day to process: the given one, else the day before the run's scheduled start
    (so a run scheduled at 03:00 on the 2nd processes the 1st, even if it starts late)."""
    if date is not None:
        return date
    scheduled = flow_run.scheduled_start_time
    when = scheduled if scheduled is not None else dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).date() - dt.timedelta(days=1)


def _run_id() -> str:
    current = flow_run.id
    return f"{current or 'local'}-{uuid.uuid4().hex[:8]}"


@flow(name="ingest-day", log_prints=False)
def ingest_day(date: Day, settings: Settings | None = None) -> dict:
    """Fetch a source day's new objects into the raw zone and stage them into the event lake."""
    settings = settings or get_settings()
    lake = Lake(settings.lake_root)
    _preflight(settings, lake, date)
    return {"source_day": date.isoformat(), **_ingest(settings, lake, date)}


def _preflight(settings: Settings, lake: Lake, day: Day, *, own_day: bool = False) -> None:
    """Fail before the first lake write when the source is wrong (bucket, endpoint, access),
    the run's own day lists no objects (``own_day``: the feed is down), or the lake root
    cannot take writes."""
    listed = list_source_objects(settings, day)
    if own_day:
        require_objects(settings, day, listed)
    lake.ensure_writable()


def _ingest(settings: Settings, lake: Lake, day: Day) -> dict:
    """Fetch then stage one source day, holding the day's lake lock (one writer per day)."""
    with day_lock(lake, day):
        fetch, stage = (timeout_where_enforced(t) for t in (fetch_new_objects, stage_source_day))
        fetched = fetch(settings, str(lake.root), day)
        staged = stage(str(lake.root), day, settings.duckdb_memory_limit)
    return {"fetch": fetched, "stage": staged}


# No timeout: it always runs in a task runner's worker thread, where none can be enforced.
@task(name="ingest-source-day")
def ingest_source_day(settings: Settings, lake_root: str, day: Day) -> dict:
    """One day's fetch and stage as a unit a backfill can run beside other days."""
    return _ingest(settings, Lake(Path(lake_root)), day)


@flow(name="daily-pipeline", log_prints=False)
def daily_pipeline(date: Day | None = None, lookback_days: int | None = None) -> dict:
    """Fetch, stage, transform, validate and load one source day (default: yesterday), with
    the late objects of the ``lookback_days`` before it (default: VDP_LOOKBACK_DAYS)."""
    settings = get_settings(lookback_days=lookback_days)
    day = processing_day(date)
    earlier = earlier_days(day, settings.lookback_days)
    lake = Lake(settings.lake_root)
    run_id = _run_id()
    started = time.perf_counter()
    prewarm()
    summary: dict = {"run_id": run_id, "source_day": day.isoformat(), "timings": {}}
    try:
        _preflight(settings, lake, day, own_day=True)
        with day_slots([*earlier, day]):  # Prefect-side guard: runs of a day never overlap
            step = time.perf_counter()
            summary.update(_ingest(settings, lake, day))
            summary["timings"]["fetch+stage"] = time.perf_counter() - step
            step = time.perf_counter()
            summary["lookback"] = catch_late_objects(settings, str(lake.root), earlier)
            summary["timings"]["lookback"] = time.perf_counter() - step
            late = [Day.fromisoformat(d["source_day"]) for d in summary["lookback"] if d["staged"]]
            published = publish_days(
                settings, lake, [*late, day], run_id, summary["fetch"]["listed"], late_days=late
            )
            summary["timings"].update(published.pop("timings"))
            summary.update(published)
            summary["status"] = "succeeded"
    except ValidationFailed as exc:
        summary["validation"] = exc.report.to_dict()
        summary["status"] = f"failed: {exc}"
        raise
    except Exception as exc:
        summary["status"] = f"failed: {exc}"
        raise
    finally:
        summary["timings"]["total"] = time.perf_counter() - started
        publish_run_artifacts(settings, lake, summary)
    return summary


def _day_range(start: Day, end: Day, what: str) -> list[Day]:
    if end < start:
        raise ValueError(f"{what} end {end} is before start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _publish_in_order(settings: Settings, lake: Lake, ingested: dict[Day, dict]) -> list[dict]:
    """Publish already staged days one by one, oldest first, each deferring the later ones
    (the curated tables and warehouse end up as a sequential run would leave them)."""
    days = sorted(ingested)
    results = []
    for i, day in enumerate(days):
        listed = ingested[day]["fetch"]["listed"]
        published = publish_days(settings, lake, [day], _run_id(), listed, days[i + 1 :])
        results.append({"source_day": day.isoformat(), **ingested[day], **published})
    return results


@flow(name="backfill", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=False)
def backfill(start: Day, end: Day) -> dict:
    """Process a range of source days: fetch and stage concurrently, then publish each day in
    order (the curated tables and warehouse end up as a sequential run would leave them)."""
    days = _day_range(start, end, "backfill")
    settings = get_settings()
    lake = Lake(settings.lake_root)
    require_days(settings, days[1:])  # each day of a backfill is a run's own day
    _preflight(settings, lake, start, own_day=True)
    prewarm()
    with day_slots(days):  # no other run of these days may overlap this backfill
        ingests = {d: ingest_source_day.submit(settings, str(lake.root), d) for d in days}
        wait(list(ingests.values()))
        results = _publish_in_order(settings, lake, {d: f.result() for d, f in ingests.items()})
        return {"days": [d.isoformat() for d in days], "results": results}


@flow(name="reprocess", log_prints=False)
def reprocess(start: Day, end: Day) -> dict:
    """Re-stage and re-publish source days from the raw zone alone, never reading the source
    (staging rules changed, or the source is gone). Refuses, before writing anything, a day
    that was never fetched or whose raw files `vdp prune` removed."""
    days = _day_range(start, end, "reprocess")
    settings = get_settings()
    lake = Lake(settings.lake_root)
    files = {d: raw_files(lake, d) for d in days}
    lake.ensure_writable()
    prewarm()
    with day_slots(days):
        ingested = {}
        for day in days:
            with day_lock(lake, day):
                staged = stage_source_day(str(lake.root), day, settings.duckdb_memory_limit)
            fetch = {"source_day": day.isoformat(), "listed": len(files[day]), "fetched": 0}
            ingested[day] = {"fetch": fetch, "stage": staged}
        results = _publish_in_order(settings, lake, ingested)
        return {"days": [d.isoformat() for d in days], "results": results}
