"""Publishing: a run's curated tables, state and warehouse load as one transaction.

Under the publish lock a run first settles what killed publishes left, then transforms its
source days into scratch, validates them, swaps the new partitions into the lake (journaled
under the run id) and loads the warehouse, which records the run id in load_audit in the same
transaction. The swap commits only after the load did; a failed load rolls it back unless the
warehouse committed, and when that cannot be known the journal stays for the next run's
``recover_publish`` to settle against load_audit.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

from prefect.runtime import flow_run

from flows.catalog import refresh_catalog
from flows.checkpoints import checkpoint
from flows.lake import PUBLISH_SCRATCH, Lake, Swap, Txn, TxnKind, recover, sweep_temp_files
from flows.load import is_load_committed, load_warehouse
from flows.locks import publish_lock
from flows.lookback import periods_touched_by
from flows.settings import Settings
from flows.transform import TransformResult, build_curated_tables
from flows.validate import validate_data
from flows.warehouse import WarehouseConnectionError, warehouse_url


def recover_publish(lake: Lake, url: str) -> list[str]:
    """Settle the publishes killed runs left (hold the publish lock): roll a swap forward when
    load_audit has its run, back otherwise; drop their scratch and report temporaries."""
    seen = recover(lake, TxnKind.PUBLISH, lambda run_id: is_load_committed(url, run_id))
    if lake.sweep_scratch(PUBLISH_SCRATCH):  # a publish was killed; it may have been reporting
        sweep_temp_files(lake.validation_runs_dir)
    return seen


def _link_copy(src: Path, dst: Path) -> Path:
    """A hard-linked copy of the scratch output, so the loader keeps reading it after the
    swap has moved the originals into the lake."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def _settle_failed_load(swap: Swap, url: str, run_id: str, exc: BaseException) -> None:
    """After a failed load, undo the lake swap unless the warehouse did commit (the connection
    can drop after COMMIT reached the server). When that cannot be known now, leave the swap
    journaled: the next run's recover_publish asks the warehouse again and settles it."""
    if isinstance(exc, WarehouseConnectionError):  # never connected: nothing was committed
        swap.rollback()
        return
    try:
        committed = is_load_committed(url, run_id)
    except Exception:  # warehouse unreachable right now: leave it to the next recover_publish
        return
    if committed:
        swap.commit()
    else:
        swap.rollback()


def _swap_and_load(
    lake: Lake, url: str, run_id: str, result: TransformResult, load_dir: Path, newest: dt.date
) -> dict:
    """Swap the run's output into the lake, load the warehouse, then commit the swap (or
    settle it when the load failed)."""
    swap = Swap(lake, Txn(TxnKind.PUBLISH, run_id), result.swap_moves())
    swap.publish()
    try:
        loaded = load_warehouse(
            url,
            load_dir,
            run_id=run_id,
            partition_date=newest,
            period_ids=result.recomputed_period_ids + result.removed_period_ids,
            event_dates=result.event_dates,
            source_days=result.source_days,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
        )
    except BaseException as exc:
        _settle_failed_load(swap, url, run_id, exc)
        raise
    swap.commit()
    return loaded


def publish_days(
    settings: Settings,
    lake: Lake,
    days: list[dt.date],
    run_id: str,
    fetched_objects: int,
    defer: list[dt.date] | None = None,
    late_days: list[dt.date] | None = None,
) -> dict:
    """Transform, validate, then publish curated tables and load the warehouse together.

    The lake swap is journaled under ``run_id`` and committed only after the warehouse
    transaction (which records ``run_id`` in load_audit) commits; any failure rolls it back.
    ``defer``: staged days a later publish of the caller's covers. ``late_days`` (lookback
    days that received late objects) only shape the summary.
    """
    url = warehouse_url(settings, lake)
    timings: dict[str, float] = {}
    with publish_lock(lake):
        recover_publish(lake, url)  # what publishes killed mid-way left (we hold the lock)
        with lake.scratch(f"{PUBLISH_SCRATCH}-{run_id}") as scratch:
            started = time.perf_counter()
            result = TransformResult.from_dict(
                build_curated_tables(
                    str(lake.root),
                    days,
                    str(scratch / "curated"),
                    memory_limit=settings.duckdb_memory_limit,
                    defer=defer or [],
                )
            )
            timings["transform"] = time.perf_counter() - started
            checkpoint("publish.transformed")
            started = time.perf_counter()
            validation = validate_data(
                lake,
                run_id=run_id,
                events_paths=result.events_files,
                curated_dir=result.out_dir,
                fetched_objects=fetched_objects,
                period_ids=result.recomputed_period_ids,
            )
            timings["validate"] = time.perf_counter() - started
            checkpoint("publish.validated")
            late_periods = periods_touched_by(
                lake, late_days or [], result.out_dir, result.recomputed_period_ids
            )
            load_dir = _link_copy(result.out_dir, scratch / "load")
            started = time.perf_counter()
            loaded = _swap_and_load(lake, url, run_id, result, load_dir, max(days))
            timings["load"] = time.perf_counter() - started
    refresh_catalog(lake)
    return {
        "recomputed_periods": result.recomputed_period_ids,
        "late_periods": late_periods,
        "event_dates": [d.isoformat() for d in result.event_dates],
        "published_source_days": [d.isoformat() for d in result.source_days],
        "curated_rows": result.rows,
        "loaded": loaded,
        "validation": validation.to_dict(),
        "timings": timings,
    }
