"""The raw zone: fetch a source day's new or changed objects, byte for byte, and record them in
the day's manifest so a re-run fetches only what changed."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.checkpoints import checkpoint
from flows.errors import VdpError
from flows.lake import PART_SUFFIX, Lake, LakeError, Manifest, atomic_write_json, sweep_temp_files
from flows.logs import run_logger
from flows.settings import Settings
from flows.source import Source, SourceError, SourceObject, open_source

Progress = Callable[[str], None]

MAX_ATTEMPTS = 4
RETRY_BASE_SECONDS = 0.5


class FetchError(VdpError):
    """Some objects could not be fetched; what did succeed is already in the manifest."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class FetchSummary:
    source_day: dt.date
    listed: int = 0
    fetched: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_fetched: int = 0
    fetched_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "source_day": self.source_day.isoformat()}


def needs_fetch(obj: SourceObject, manifest: Manifest, raw_dir: Path) -> bool:
    """New key, changed etag or size, or a raw copy that is missing or of the wrong size
    (unless `vdp prune` removed it after staging: the manifest keeps the record)."""
    entry = manifest.entries.get(obj.key)
    if entry is None or entry.get("etag") != obj.etag or entry.get("size") != obj.size:
        return True
    if entry.get("pruned_at"):
        return False
    raw = raw_dir / obj.name
    return not raw.is_file() or raw.stat().st_size != obj.size


def _prepare_raw_dir(lake: Lake, day: dt.date) -> Path:
    """Create the raw day and drop temporary files a killed run left (never in the manifest)."""
    raw_dir = lake.raw_day(day)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
        for partial in raw_dir.glob(f".*{PART_SUFFIX}"):
            partial.unlink(missing_ok=True)
    except OSError as exc:
        raise LakeError(f"cannot write {raw_dir}: {exc.strerror or exc}") from exc
    return raw_dir


def fetch_object(source: Source, obj: SourceObject, raw_dir: Path) -> dict[str, Any]:
    """Download one object under a temporary name and rename it into place, retrying
    transient errors with exponential backoff. Returns its manifest entry."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        tmp = raw_dir / f".{obj.name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}"
        try:
            source.download(obj, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, raw_dir / obj.name)
            checkpoint("fetch.raw_written")
        except OSError as exc:
            raise LakeError(f"cannot write {raw_dir / obj.name}: {exc.strerror or exc}") from exc
        except SourceError as exc:
            if not exc.transient or attempt == MAX_ATTEMPTS:
                raise
            time.sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        else:
            fetched_at = dt.datetime.now(dt.UTC).isoformat()
            return {"size": obj.size, "etag": obj.etag, "fetched_at": fetched_at, "name": obj.name}
        finally:
            tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _download_all(
    source: Source,
    todo: list[SourceObject],
    raw_dir: Path,
    concurrency: int,
    report: Progress,
) -> tuple[dict[str, dict[str, Any]], list[SourceError | LakeError]]:
    """Fetch objects concurrently; returns the manifest entries of those that completed and the
    failures."""
    done: dict[str, dict[str, Any]] = {}
    failures: list[SourceError | LakeError] = []
    step = max(1, min(100, len(todo) // 10))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
        futures = {pool.submit(fetch_object, source, obj, raw_dir): obj for obj in todo}
        for count, future in enumerate(as_completed(futures), start=1):
            obj = futures[future]
            try:
                done[obj.key] = future.result()
            except (SourceError, LakeError) as exc:
                failures.append(exc)
            if count % step == 0 or count == len(todo):
                report(f"fetched {len(done)}/{len(todo)} objects ({len(failures)} failed)")
    return done, failures


def fetch_day(
    settings: Settings,
    lake: Lake,
    day: dt.date,
    *,
    progress: Progress | None = None,
    write_unchanged: bool = True,
) -> FetchSummary:
    """Fetch the day's new or changed objects into ``raw/source_day=D/`` and update its manifest.

    The source is listed before anything is written, so a bad source leaves the lake untouched.
    With ``write_unchanged=False`` (a lookback day) a listing with nothing new writes nothing.
    """
    report = progress or run_logger(__name__).info
    source = open_source(settings)
    listed = source.list_day(day)
    report(f"listed {len(listed)} objects for {day} in {source.describe()}")
    recover_fetch(lake, day)
    manifest = Manifest.read(lake, day)
    todo = [obj for obj in listed if needs_fetch(obj, manifest, lake.raw_day(day))]
    summary = FetchSummary(day, listed=len(listed), skipped=len(listed) - len(todo))
    if not todo and not write_unchanged:
        return summary
    lake.ensure_writable()
    raw_dir = _prepare_raw_dir(lake, day)
    if todo:
        atomic_write_json(lake.fetch_journal(day), {"names": sorted(o.name for o in todo)})
    done, failures = _download_all(source, todo, raw_dir, settings.fetch_concurrency, report)
    if done or not manifest.path.exists():
        manifest.entries.update(done)
        manifest.write()
        checkpoint("fetch.manifest_written")
    lake.fetch_journal(day).unlink(missing_ok=True)
    summary.fetched, summary.failed = len(done), len(failures)
    summary.fetched_keys = sorted(done)
    summary.bytes_fetched = sum(entry["size"] for entry in done.values())
    _raise_failures(failures, len(todo), day)
    return summary


def recover_fetch(lake: Lake, day: dt.date) -> list[str]:
    """Undo what a killed fetch of the day left: raw copies it renamed into place that the
    manifest (the raw zone's record of what is fetched) never listed, its download and
    manifest temporaries. Reads only the day's own files (the manifests directory is listed
    only after a killed fetch). Hold the day's lock. Returns the raw names removed."""
    journal, raw_dir = lake.fetch_journal(day), lake.raw_day(day)
    removed = []
    if journal.exists():
        try:
            names = json.loads(journal.read_text())["names"]
        except (OSError, ValueError, KeyError, TypeError):
            names = []
        recorded = set(Manifest.read(lake, day).keys_by_name())
        for name in [n for n in names if isinstance(n, str) and n not in recorded]:
            if (raw_dir / name).is_file():
                (raw_dir / name).unlink()
                removed.append(name)
        # the fetch was killed before it finished its manifest: drop a half-written one
        sweep_temp_files(lake.manifests_dir, lake.manifest_path(day).name)
        journal.unlink()
    sweep_temp_files(lake.journal_dir, journal.name)
    for partial in raw_dir.glob(f".*{PART_SUFFIX}"):
        partial.unlink(missing_ok=True)
    return removed


def _raise_failures(failures: list[SourceError | LakeError], todo: int, day: dt.date) -> None:
    """A lake fault wins (the operator must act); else one FetchError naming the first reason."""
    lake_errors = [exc for exc in failures if isinstance(exc, LakeError)]
    if lake_errors:
        raise lake_errors[0]
    if failures:
        raise FetchError(
            f"{len(failures)} of {todo} objects of {day} failed to fetch; first: {failures[0]}",
            transient=all(is_transient(exc) for exc in failures),
        )


def is_transient(exc: BaseException | None) -> bool:
    """Whether a retry may help: network faults, throttling and S3 5xx, not 403/404 or config."""
    return bool(getattr(exc, "transient", False))


def _retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry the task only when it failed on a transient error."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


@task(
    name="list-source-objects",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
    timeout_seconds=300,
)
def list_source_objects(settings: Settings, day: dt.date) -> list[SourceObject]:
    """The source objects whose name carries ``day``, sorted by key."""
    return open_source(settings).list_day(day)


# Tasks that download from the source: retried only on transient faults, never cached.
FETCH_TASK_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [5, 30],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _retry_transient,
    "cache_policy": NO_CACHE,
    "timeout_seconds": 3600,
}


@task(name="fetch-new-objects", **FETCH_TASK_OPTIONS)
def fetch_new_objects(settings: Settings, lake_root: str, day: dt.date) -> dict[str, Any]:
    """Fetch a source day's new or changed objects into the raw zone; returns the summary."""
    summary = fetch_day(settings, Lake(Path(lake_root)), day)
    run_logger(__name__).info(
        "source day %s: listed %d, fetched %d (%d bytes), skipped %d",
        day,
        summary.listed,
        summary.fetched,
        summary.bytes_fetched,
        summary.skipped,
    )
    return summary.as_dict()
