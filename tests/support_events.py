"""Test support: write staged events Parquet directly, as flows/stage.py would, so transform
and catalog tests do not depend on the staging code."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import uuid
from typing import Any

import polars as pl

from flows.lake import Lake, Swap, Txn, TxnKind
from flows.tables import EVENTS
from flows.transform import TransformResult, transform

UTC = dt.UTC

EVENTS_SCHEMA: dict[str, Any] = dict(EVENTS.polars_schema)

_ID_FIELDS = (
    "event",
    "on",
    "at",
    "entity_id",
    "organization_id",
    "lat",
    "lng",
    "location_at",
    "period_start",
    "period_finish",
)


def ts(text: str) -> dt.datetime:
    """A UTC datetime from ISO text such as '2019-06-01T18:17:10.101Z'."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def event_id(row: dict[str, Any]) -> str:
    """md5 of the |-joined content fields (NULL as empty), per docs/data-model.md."""
    joined = "|".join(_text(row.get(name)) for name in _ID_FIELDS)
    if row.get("break_vehicle_id") is not None:  # only breaks carry a vehicle id
        joined += "|" + row["break_vehicle_id"]
    return hashlib.md5(joined.encode()).hexdigest()


def is_valid_point(row: dict[str, Any]) -> bool:
    lat, lng = row.get("lat"), row.get("lng")
    return bool(
        row.get("on") == "vehicle"
        and row.get("event") == "update"
        and lat is not None
        and lng is not None
        and row.get("location_at") is not None
        and -90 <= lat <= 90
        and -180 <= lng <= 180
        and not (lat == 0 and lng == 0)
    )


def _complete(row: dict[str, Any], source_day: dt.date, line: int) -> dict[str, Any]:
    full: dict[str, Any] = {name: None for name in EVENTS_SCHEMA}
    full.update(row)
    for name in ("at", "location_at", "period_start", "period_finish"):
        if isinstance(full[name], str):
            full[name] = ts(full[name])
    if full["on"] is None:
        full["on"] = "operating_period" if full["event"] in ("create", "delete") else "vehicle"
    full["organization_id"] = full["organization_id"] or "org-1"
    full["event_id"] = event_id(full)
    full["is_valid_point"] = is_valid_point(full)
    full["source_key"] = full["source_key"] or f"{source_day.isoformat()}-events.json"
    full["line_number"] = full["line_number"] or line
    full["ingested_at"] = dt.datetime(2030, 1, 1, tzinfo=UTC)
    full["event_date"] = full["at"].astimezone(UTC).date()
    full["source_day"] = source_day
    return full


def write_events(lake: Lake, source_day: dt.date, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Replace everything staged for ``source_day`` with ``rows`` (as a re-stage does).

    Each row needs ``event``, ``at`` and ``entity_id``; other columns get defaults, and
    event_id / is_valid_point / event_date are computed. Returns the written frame."""
    for partition in lake.events_partitions_of(source_day):
        shutil.rmtree(partition)
    full = [_complete(row, source_day, line) for line, row in enumerate(rows, start=1)]
    frame = pl.DataFrame(full, schema=EVENTS_SCHEMA, orient="row")
    for (event_date,), part in frame.group_by("event_date"):
        path = lake.events_partition(event_date, source_day)
        path.mkdir(parents=True, exist_ok=True)
        part.sort("line_number").write_parquet(path / "part-0.parquet")
    return frame


def vehicle_update(
    vehicle: str, at: str, lat: float | None, lng: float | None, **extra: Any
) -> dict[str, Any]:
    """An update event whose location.at equals ``at`` unless given."""
    row = {"event": "update", "on": "vehicle", "at": at, "entity_id": vehicle}
    row.update({"lat": lat, "lng": lng, "location_at": extra.pop("location_at", at)})
    row.update(extra)
    return row


def period_event(
    event: str, period: str, at: str, start: str, finish: str, **extra: Any
) -> dict[str, Any]:
    """A create or delete event of an operating period."""
    row = {"event": event, "on": "operating_period", "at": at, "entity_id": period}
    row.update({"period_start": start, "period_finish": finish})
    row.update(extra)
    return row


def break_event(
    event: str, break_id: str, vehicle: str, at: str, start: str, finish: str, **extra: Any
) -> dict[str, Any]:
    """A create or delete event of a driver's break of ``vehicle``."""
    row = {"event": event, "on": "break", "at": at, "entity_id": break_id}
    row.update({"period_start": start, "period_finish": finish, "break_vehicle_id": vehicle})
    row.update(extra)
    return row


def publish(lake: Lake, days: list[dt.date]) -> TransformResult:
    """Transform source days into scratch and swap the result into the lake, as the flow does."""
    with lake.scratch("transform") as out:
        result = transform(lake, days, out)
        swap = Swap(lake, Txn(TxnKind.PUBLISH, uuid.uuid4().hex), result.swap_moves())
        swap.publish()
        swap.commit()
    return result
