"""Settle everything killed runs left under a lake root, and nothing else (no re-run): the
recovery a crash-replay test checks. The pipeline never needs it whole, since each of its steps
first settles what a killed run of the same step left, under the lock that guards it: a fetch
its day's unrecorded copies (``extract.recover_fetch``), a staging its day's swap and scratch
(``stage.recover_stage_swaps``), a publish the publish swaps, scratch and report temporaries
(``publish.recover_publish``), a catalog refresh its half-built file."""

from __future__ import annotations

import datetime as dt
import re

from flows.extract import recover_fetch
from flows.lake import CATALOG_SCRATCH, PART_SUFFIX, Lake, Txn, TxnKind, temp_name_target
from flows.locks import catalog_lock, day_lock, publish_lock
from flows.publish import recover_publish
from flows.stage import recover_stage_swaps

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def days_left_behind(lake: Lake) -> list[dt.date]:
    """Source days a killed fetch or staging left something of: a journal or its temporary,
    a scratch directory, a manifest temporary or a download in progress."""
    names = [p.name.lstrip(".") for p in (*lake.journal_dir.glob("*"), *lake.tmp_dir.glob("*"))]
    txns = [Txn.parse(name) for name in names]
    days = {t.day for t in txns if t.kind is not TxnKind.PUBLISH and t.day}
    names = [temp_name_target(p) or "" for p in lake.manifests_dir.glob(".*")]
    names += [p.parent.name for p in lake.raw_dir.glob(f"source_day=*/.*{PART_SUFFIX}")]
    for name in names:
        found = _DAY.search(name) if name.startswith("source_day=") else None
        days.update([dt.date.fromisoformat(found.group())] if found else [])
    return sorted(days)


def recover_day(lake: Lake, day: dt.date) -> None:
    """Settle a killed fetch and a killed staging of one source day (hold the day's lock)."""
    recover_fetch(lake, day)
    recover_stage_swaps(lake, day)
    lake.sweep_scratch(Txn(TxnKind.STAGE, day=day).name)


def recover_lake(lake: Lake, url: str) -> dict[str, object]:
    """Settle everything killed runs left, each part under its lock; returns what it found."""
    with publish_lock(lake):
        publishes = recover_publish(lake, url)
    days = days_left_behind(lake)
    for day in days:
        with day_lock(lake, day):
            recover_day(lake, day)
    with catalog_lock(lake):
        lake.sweep_scratch(CATALOG_SCRATCH)
    return {"publishes": publishes, "days": [d.isoformat() for d in days]}
