"""Finish or undo what killed runs left under the lake root, without redoing any of their work.

Each step of a run first settles what a killed run of the same step left, holding the lock
that guards it: a fetch its day's unrecorded copies (``extract.recover_fetch``), a staging its
day's swap and scratch (``stage.recover_stage_swaps``), a publish the publish swaps, scratch
and report temporaries (``recover_publish``), a catalog refresh its half-built file.
``recover_lake`` runs all of them for every day that has something left, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import re

from flows.catalog import CATALOG_SCRATCH
from flows.extract import recover_fetch
from flows.lake import FETCH_TXN, Lake, recover, sweep_temp_files, temp_name_target
from flows.load import is_load_committed
from flows.locks import lake_lock
from flows.stage import recover_stage_swaps, stage_txn_prefix

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_publish_txn(txn: str) -> bool:
    """Swaps that publish_days journals. Staging swaps and fetch journals belong to the holder
    of their day's lock, who may be writing at this very moment, so only it may recover them."""
    return not txn.startswith((stage_txn_prefix(), FETCH_TXN))


def recover_publish(lake: Lake, url: str) -> list[str]:
    """Settle the publishes killed runs left (hold the publish lock): roll a swap forward when
    load_audit has its run, back otherwise; drop their scratch and report temporaries."""
    seen = recover(lake, lambda txn: is_load_committed(url, txn), only=is_publish_txn)
    if lake.sweep_scratch("run"):  # a publish was killed; it may have been writing its report
        sweep_temp_files(lake.validation_dir / "runs")
    return seen


def recover_day(lake: Lake, day: dt.date) -> None:
    """Settle a killed fetch and a killed staging of one source day (hold the day's lock)."""
    recover_fetch(lake, day)
    recover_stage_swaps(lake, day)
    lake.sweep_scratch(f"stage-{day.isoformat()}")


def days_left_behind(lake: Lake) -> list[dt.date]:
    """Source days with a fetch or staging journal, temporary or scratch under the lake root."""
    names = [p.name for p in lake.journal_dir.glob("*")] + [p.name for p in lake.tmp_dir.glob("*")]
    names += [temp_name_target(p) or "" for p in lake.manifest_path(dt.date.min).parent.glob(".*")]
    names += [p.parent.name for p in lake.raw_dir.glob("source_day=*/.*.part")]
    days = set()
    for name in names:
        if name.lstrip(".").startswith((FETCH_TXN, stage_txn_prefix(), "source_day=")):
            found = _DAY.search(name)
            days.update([dt.date.fromisoformat(found.group())] if found else [])
    return sorted(days)


def recover_lake(lake: Lake, url: str) -> dict[str, object]:
    """Settle everything killed runs left, each part under its lock; returns what it found."""
    with lake_lock(lake, "publish"):
        publishes = recover_publish(lake, url)
    days = days_left_behind(lake)
    for day in days:
        with lake_lock(lake, f"day-{day.isoformat()}"):
            recover_day(lake, day)
    with lake_lock(lake, "catalog"):
        lake.sweep_scratch(CATALOG_SCRATCH)
    return {"publishes": publishes, "days": [d.isoformat() for d in days]}
