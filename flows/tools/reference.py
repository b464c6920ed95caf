"""Independent reference implementation of line acceptance, periods and distances.

Deliberately plain Python (json.loads per line, dicts, math) and free of pipeline code: it is
the oracle that tests compare the DuckDB/Polars pipeline against. Semantics follow
docs/data-model.md ("quarantine" reasons and "Distance semantics (exact)").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

EARTH_RADIUS_KM = 6371.0088
MIN_AT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_AT = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
ENTITY_EVENTS = {
    "vehicle": ("register", "update", "deregister"),
    "operating_period": ("create", "delete"),
    "break": ("create", "delete"),
}
BOUNDED = ("operating_period", "break")  # entities with data.start / data.finish
BOM = b"\xef\xbb\xbf"
_DAY_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")

ObjectLike = str | Path | tuple[str, bytes]


class _Rejected(Exception):
    """A line fails one acceptance rule; ``reason`` is its quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def accept_line(text: str) -> tuple[dict | None, str | None]:
    """The typed event of one line, or None and the quarantine reason (first rule that fails)."""
    if not text.strip():
        return None, "empty_line"
    try:
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None, "invalid_json"
    if not isinstance(obj, dict):
        return None, "not_an_object"
    try:
        return _typed_event(obj), None
    except _Rejected as exc:
        return None, exc.reason


def _require(obj: dict) -> tuple[str, str, dict]:
    """Presence checks (null counts as missing), then entity and event names."""
    for name in ("event", "on", "at"):
        if obj.get(name) is None:
            raise _Rejected(f"missing_field:{name}")
    data = obj.get("data")
    if not isinstance(data, dict) or data.get("id") is None:
        raise _Rejected("missing_field:data.id")
    if obj.get("organization_id") is None:
        raise _Rejected("missing_field:organization_id")
    on, event = obj["on"], obj["event"]
    if not isinstance(on, str) or on not in ENTITY_EVENTS:
        raise _Rejected("unknown_entity")
    if not isinstance(event, str) or event not in ENTITY_EVENTS[on]:
        raise _Rejected("unknown_event")
    if on == "break" and data.get("vehicle_id") is None:
        raise _Rejected("missing_field:data.vehicle_id")
    if on == "break" or (on == "operating_period" and event == "create"):
        for name in ("start", "finish"):
            if data.get(name) is None:
                raise _Rejected(f"missing_field:data.{name}")
    return on, event, data


def _location(on: str, data: dict) -> tuple[object, object, object]:
    """lat, lng and location.at of a vehicle event (Nones when absent), type-checked."""
    location = data.get("location") if on == "vehicle" else None
    if location is None:
        return None, None, None
    if not isinstance(location, dict):
        raise _Rejected("invalid_type:data.location")
    lat, lng = location.get("lat"), location.get("lng")
    for name, value in (("lat", lat), ("lng", lng)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _Rejected(f"invalid_type:{name}")
    return lat, lng, location.get("at")


def parse_timestamp(value: object, name: str) -> dt.datetime | None:
    """ISO-8601 with or without fraction, Z/offset or naive (= UTC), as an aware UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Rejected(f"invalid_timestamp:{name}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _Rejected(f"invalid_timestamp:{name}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed if parsed.tzinfo is dt.UTC else parsed.astimezone(dt.UTC)


def _typed_event(obj: dict) -> dict:
    on, event, data = _require(obj)
    entity_id, org = data["id"], obj["organization_id"]
    if not isinstance(entity_id, str):
        raise _Rejected("invalid_type:data.id")
    vehicle_id = data.get("vehicle_id") if on == "break" else None
    if on == "break" and not isinstance(vehicle_id, str):
        raise _Rejected("invalid_type:data.vehicle_id")
    if not isinstance(org, str):
        raise _Rejected("invalid_type:organization_id")
    lat, lng, raw_location_at = _location(on, data)
    at = parse_timestamp(obj["at"], "at")
    if raw_location_at == obj["at"]:
        location_at = at
    else:
        location_at = parse_timestamp(raw_location_at, "data.location.at")
    start = finish = None
    if on in BOUNDED:
        start = parse_timestamp(data.get("start"), "data.start")
        finish = parse_timestamp(data.get("finish"), "data.finish")
    named = (("at", at), ("data.location.at", location_at), ("data.start", start))
    for name, value in (*named, ("data.finish", finish)):
        if value is not None and not MIN_AT <= value < MAX_AT:
            raise _Rejected(f"timestamp_out_of_range:{name}")
    event_row = {
        "event": event,
        "on": on,
        "at": at,
        "entity_id": entity_id,
        "organization_id": org,
        "lat": None if lat is None else float(lat),
        "lng": None if lng is None else float(lng),
        "location_at": location_at,
        "period_start": start,
        "period_finish": finish,
        "break_vehicle_id": vehicle_id,
    }
    event_row["is_valid_point"] = is_valid_point(event_row)
    event_row["event_id"] = event_id(event_row)
    return event_row


def is_valid_point(event: dict) -> bool:
    """A vehicle update with a complete, in-range location that is not exactly (0, 0)."""
    lat, lng = event["lat"], event["lng"]
    if event["event"] != "update" or lat is None or lng is None or event["location_at"] is None:
        return False
    return -90 <= lat <= 90 and -180 <= lng <= 180 and not (lat == 0 and lng == 0)


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 UTC text with microseconds, e.g. 2019-06-01T18:17:10.101000Z."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _micros(value: dt.datetime | None) -> str | None:
    return None if value is None else str((value - EPOCH) // ONE_MICROSECOND)


def event_id(event: dict) -> str:
    """md5 of the |-joined event content (timestamps as epoch microseconds, NULL as empty):
    equal for two deliveries of a line, whatever their field order or extra fields."""
    parts = [
        event["event"],
        event["on"],
        _micros(event["at"]),
        event["entity_id"],
        event["organization_id"],
        None if event["lat"] is None else repr(event["lat"]),
        None if event["lng"] is None else repr(event["lng"]),
        _micros(event["location_at"]),
        _micros(event["period_start"]),
        _micros(event["period_finish"]),
    ]
    if event.get("break_vehicle_id") is not None:  # only breaks: other ids stay as they were
        parts.append(event["break_vehicle_id"])
    text = "|".join("" if part is None else part for part in parts)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in km on a sphere of radius 6371.0088 km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def split_lines(data: bytes) -> list[str | None]:
    """The lines of one object (BOM and CRLF tolerated); None for a line that is not UTF-8."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines: list[str | None] = []
    for raw in raw_lines:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            lines.append(None)
            continue
        lines.append(text[:-1] if text.endswith("\r") else text)
    return lines


def source_day_of(key: str) -> str | None:
    """The YYYY-MM-DD a key's base name starts with (None: the pipeline never selects it)."""
    match = _DAY_PREFIX.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1)).isoformat()
    except ValueError:
        return None


def iter_objects(objects: ObjectLike | Iterable[ObjectLike]) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of each object: a directory (its files, sorted), file paths or pairs."""
    if isinstance(objects, str | Path) and Path(objects).is_dir():
        objects = sorted(p for p in Path(objects).iterdir() if p.is_file())
    elif isinstance(objects, str | Path | tuple):
        objects = [objects]
    for item in objects:
        if isinstance(item, tuple):
            yield item[0], item[1]
        else:
            path = Path(item)
            yield path.name, path.read_bytes()


@dataclass
class _DayStats:
    objects: int = 0
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)
    event_dates: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {
            "objects": self.objects,
            "lines": self.lines,
            "events": self.events,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
            "event_dates": dict(sorted(self.event_dates.items())),
        }


@dataclass
class Analysis:
    """One pass over objects: per-source-day counts and the distinct events the answer needs."""

    days: dict[str, _DayStats] = field(default_factory=dict)
    period_events: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    break_events: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    points: dict[tuple[str, dt.datetime], tuple] = field(default_factory=dict)
    seen: set = field(default_factory=set)

    def add_object(self, key: str, data: bytes) -> None:
        day = source_day_of(key)
        if day is None:
            return
        stats = self.days.setdefault(day, _DayStats())
        stats.objects += 1
        for text in split_lines(data):
            stats.lines += 1
            event, reason = accept_line(text) if text is not None else (None, "invalid_json")
            if event is None:
                stats.quarantined += 1
                stats.quarantine_reasons[reason] += 1
            elif event["event_id"] in stats.seen:
                stats.duplicates += 1
            else:
                stats.seen.add(event["event_id"])
                stats.events += 1
                stats.event_dates[event["at"].date().isoformat()] += 1
                self._add_distinct(event)

    def _add_distinct(self, event: dict) -> None:
        """Keep what the answer needs from events not seen in any object before."""
        if event["event_id"] in self.seen:
            return
        self.seen.add(event["event_id"])
        if event["on"] == "operating_period":
            self.period_events[event["entity_id"]].append(event)
        elif event["on"] == "break":
            self.break_events[event["entity_id"]].append(event)
        elif event["is_valid_point"]:
            key = (event["entity_id"], event["location_at"])
            candidate = (event["at"], event["lat"], event["lng"], event["organization_id"])
            kept = self.points.get(key)
            if kept is None or candidate < kept:
                self.points[key] = candidate

    def source_days(self) -> dict[str, dict]:
        return {day: self.days[day].as_dict() for day in sorted(self.days)}

    def periods(self) -> list[dict]:
        return compute_periods(self.period_events, self.points, self.break_events)

    def breaks(self) -> list[dict]:
        return compute_breaks(self.break_events)


def analyze(objects: ObjectLike | Iterable[ObjectLike]) -> Analysis:
    analysis = Analysis()
    for key, data in iter_objects(objects):
        analysis.add_object(key, data)
    return analysis


def source_day_stats(objects: ObjectLike | Iterable[ObjectLike]) -> dict[str, dict]:
    """Per source day: objects, lines, events, duplicates, quarantined, reasons, event_dates."""
    return analyze(objects).source_days()


def answer_from_files(objects: ObjectLike | Iterable[ObjectLike]) -> dict:
    """{"periods": [...]}: every period (deleted ones flagged) with per-vehicle distances."""
    return {"periods": analyze(objects).periods()}


def _period_order(event: dict) -> tuple:
    """Order by at; a delete wins a tie with a create (sorts after it)."""
    return (
        event["at"],
        event["event"] == "delete",
        event["period_start"] or MIN_AT,
        event["period_finish"] or MIN_AT,
        event["organization_id"],
        event.get("break_vehicle_id") or "",
    )


def compute_breaks(break_events: dict[str, list[dict]]) -> list[dict]:
    """Breaks sorted by id, by the operating-period rule: the last event decides liveness (a
    delete wins a tie), the latest create gives bounds, vehicle and organization."""
    breaks = []
    for break_id in sorted(break_events):
        events = sorted(break_events[break_id], key=_period_order)
        creates = [e for e in events if e["event"] == "create"]
        if not creates:
            continue
        latest = creates[-1]
        breaks.append(
            {
                "break_id": break_id,
                "vehicle_id": latest["break_vehicle_id"],
                "organization_id": latest["organization_id"],
                "start_at": iso(latest["period_start"]),
                "finish_at": iso(latest["period_finish"]),
                "is_deleted": events[-1]["event"] == "delete",
            }
        )
    return breaks


def _live_breaks(break_events: dict[str, list[dict]]) -> dict[tuple[str, str], list[tuple]]:
    """(vehicle, organization) -> (start, finish) of each of its live breaks."""
    live: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for b in compute_breaks(break_events):
        if not b["is_deleted"]:
            bounds = (_parse_iso(b["start_at"]), _parse_iso(b["finish_at"]))
            live[(b["vehicle_id"], b["organization_id"])].append(bounds)
    return live


def _parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def compute_periods(
    period_events: dict[str, list[dict]],
    points: dict[tuple[str, dt.datetime], tuple],
    break_events: dict[str, list[dict]] | None = None,
) -> list[dict]:
    """Periods sorted by id; a period needs at least one create (its bounds come from one)."""
    by_org: dict[str, list[tuple]] = defaultdict(list)
    for (vehicle, location_at), (_at, lat, lng, org) in points.items():
        by_org[org].append((location_at, vehicle, lat, lng))
    timelines = {}
    for org, rows in by_org.items():
        rows.sort()
        timelines[org] = ([row[0] for row in rows], rows)
    breaks = _live_breaks(break_events or {})
    periods = []
    for period_id in sorted(period_events):
        events = sorted(period_events[period_id], key=_period_order)
        creates = [e for e in events if e["event"] == "create"]
        if creates:
            periods.append(_period_answer(period_id, events, creates[-1], timelines, breaks))
    return periods


def _in_break(breaks: list[tuple], leg_start: dt.datetime, leg_end: dt.datetime) -> bool:
    """A leg is left out when a break touches its time span (boundaries included)."""
    return any(start <= leg_end and finish >= leg_start for start, finish in breaks)


def _period_answer(
    period_id: str, events: list[dict], latest: dict, timelines: dict, breaks: dict
) -> dict:
    org, start, finish = latest["organization_id"], latest["period_start"], latest["period_finish"]
    times, rows = timelines.get(org, ([], []))
    per_vehicle: dict[str, dict] = {}
    last: dict[str, tuple[dt.datetime, float, float]] = {}
    window = rows[bisect_left(times, start) : bisect_right(times, finish)]
    for location_at, vehicle, lat, lng in window:
        acc = per_vehicle.get(vehicle)
        if acc is None:
            per_vehicle[vehicle] = acc = {"distance_km": 0.0, "location_points": 0}
            acc["break_distance_km"] = 0.0
            acc["first_location_at"] = iso(location_at)
        else:
            previous_at, previous_lat, previous_lng = last[vehicle]
            leg_km = haversine_km(previous_lat, previous_lng, lat, lng)
            in_break = _in_break(breaks.get((vehicle, org), []), previous_at, location_at)
            acc["break_distance_km" if in_break else "distance_km"] += leg_km
        acc["location_points"] += 1
        acc["last_location_at"] = iso(location_at)
        last[vehicle] = (location_at, lat, lng)
    distances = {vehicle: per_vehicle[vehicle] for vehicle in sorted(per_vehicle)}
    total = sum(v["distance_km"] for v in distances.values())
    return {
        "operating_period_id": period_id,
        "organization_id": org,
        "start_at": iso(start),
        "finish_at": iso(finish),
        "is_deleted": events[-1]["event"] == "delete",
        "vehicles": len(distances),
        "avg_distance_km": total / len(distances) if distances else None,
        "total_distance_km": total,
        "total_break_distance_km": sum(v["break_distance_km"] for v in distances.values()),
        "vehicle_distances": distances,
    }
