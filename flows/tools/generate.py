"""Synthetic door2door-style events with the quirks of real feeds, and their expected answer.

Writes `<out>/data/<name>.json` (a directory or `s3://bucket/prefix/`) plus `<out>/expected.json`,
which flows.tools.reference computes from the written bytes. Same seed, same bytes: one
random.Random drives everything, ids are derived from it, no wall clock is read.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from flows.errors import VdpError
from flows.tools import reference
from flows.tools.generate_breaks import break_lines, plan_breaks

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
NAME_CLOCK_OFFSET_MS = 3 * HOUR_MS  # object names run 3 h behind the events' UTC clock
DEFAULT_STEP_MS = 5_000
FILE_SECONDS_MS = 5_000  # an object spans at least a few seconds of events
FILE_MAX_SPAN_MS = 15 * MINUTE_MS  # and at most this, so quiet hours do not share one object
FILE_MIN_LINES = 200
FILES_PER_DAY = 300  # with events_per_day: objects of about events_per_day / 300 lines
LAT_MIN, LAT_MAX, LNG_MIN, LNG_MAX = 52.45, 52.57, 13.28, 13.52
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LNG = M_PER_DEG_LAT * math.cos(math.radians(52.51))
VEHICLE_QUIRKS = ("null_location", "extra_fields", "missing_field")
UPDATE_QUIRKS = (
    "glitch_range",
    "glitch_zero",
    "no_location",
    "null_latlng",
    "repeated_fix",
    "extra_fields",
    "missing_field",
)
FILE_QUIRKS = ("duplicate", "cross_day", "out_of_order", "truncated", "garbage", "blank")
STALE_FIX_RATE = 0.03  # location.at a little before at, as phones report a cached fix
GARBAGE = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ERROR upstream timed out (110: Connection timed out)",
    "event=update on=vehicle",
    "}{",
)
TOP_EXTRAS = (',"api_version":"2.3.1"', ',"_meta":{"gateway":"gw-3","retries":1}')
DATA_EXTRAS = (',"battery":87', ',"heading":123.5,"firmware":"v1.9"')


class GenerateError(VdpError):
    """Generation cannot write its output (missing bucket, unreachable endpoint, bad arguments)."""


@dataclass
class GenerateResult:
    out: str
    files: int
    lines: int
    bytes: int
    late_keys: list[str]
    expected: str


@dataclass
class _Vehicle:
    id: str
    org: str
    lat: float
    lng: float
    heading: float
    speed: float  # m/s
    drives: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Period:
    id: str
    org: str
    events: list[tuple[int, str, int, int]]  # (at, create|delete, start, finish) in ms
    bounds: tuple[int, int]


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@lru_cache(maxsize=8192)
def _minute_prefix(minute: int) -> str:
    return dt.datetime.fromtimestamp(minute * 60, dt.UTC).strftime("%Y-%m-%dT%H:%M:")


def _ts(ms: int) -> str:
    minute, rest = divmod(ms, MINUTE_MS)
    return f"{_minute_prefix(minute)}{rest // 1000:02d}.{rest % 1000:03d}Z"


def _num(value: float) -> str:
    """JSON number as a JavaScript producer writes it (integral values without a fraction)."""
    return str(int(value)) if value == int(value) else repr(value)


def _object_name(ms: int) -> str:
    d = dt.datetime.fromtimestamp((ms - NAME_CLOCK_OFFSET_MS) / 1000, dt.UTC)
    return f"{d:%Y-%m-%d}-{d.hour:02d}-{d.minute:02d}-{d.second}-events.json"


def _plan_period(
    rng: random.Random, pid: str, org: str, k: int, w0: int, last_day: bool
) -> _Period:
    """Roles by index: 0 spans midnight UTC, 1 is deleted (maybe next day), 2 re-created."""
    if k == 0:
        midnight = w0 + 21 * HOUR_MS
        start = midnight - rng.randint(5 * MINUTE_MS, 45 * MINUTE_MS)
        finish = midnight + rng.randint(5 * MINUTE_MS, 45 * MINUTE_MS)
    else:
        start = w0 + rng.randint(HOUR_MS, 19 * HOUR_MS)
        finish = start + rng.randint(10 * MINUTE_MS, 45 * MINUTE_MS)
    created = start - rng.randint(1_000, 20 * MINUTE_MS)
    events = [(created, "create", start, finish)]
    role = k if k < 3 else (1 if rng.random() < 0.15 else 9)
    if role == 1:
        if not last_day and rng.random() < 0.5:
            deleted = w0 + DAY_MS + rng.randint(5 * MINUTE_MS, 3 * HOUR_MS)
        else:
            deleted = rng.randint(created + MINUTE_MS, finish + 2 * HOUR_MS)
        events.append((deleted, "delete", start, finish))
    elif role == 2:
        deleted = created + rng.randint(MINUTE_MS, 10 * MINUTE_MS)
        recreated = deleted + rng.randint(MINUTE_MS, 20 * MINUTE_MS)
        new_start = max(recreated + 1_000, start + rng.randint(-10 * MINUTE_MS, 40 * MINUTE_MS))
        new_finish = new_start + rng.randint(10 * MINUTE_MS, 45 * MINUTE_MS)
        events += [(deleted, "delete", start, finish), (recreated, "create", new_start, new_finish)]
        start, finish = new_start, new_finish
    return _Period(pid, org, events, (start, finish))


def _plan_drives(
    rng: random.Random, fleet: list[_Vehicle], periods: list[_Period], w0: int, free: int
) -> None:
    """Vehicles drive around their org's periods (some only part of it) and freely."""
    for period in periods:
        start, finish = period.bounds
        for vehicle in fleet:
            if vehicle.org != period.org:
                continue
            r = rng.random()
            if r < 0.4:
                begin = start - rng.randint(0, 5 * MINUTE_MS)
                vehicle.drives.append((begin, finish + rng.randint(0, 5 * MINUTE_MS)))
            elif r < 0.6:
                span = finish - start
                begin = start + rng.randint(0, span // 2)
                vehicle.drives.append((begin, finish - rng.randint(0, span // 3)))
    for vehicle in fleet:
        for _ in range(free):
            begin = w0 + rng.randint(0, DAY_MS - 30 * MINUTE_MS)
            vehicle.drives.append((begin, begin + rng.randint(5 * MINUTE_MS, 30 * MINUTE_MS)))


def _merge(drives: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Clip to [lo, hi) and merge drives less than a minute apart into shifts."""
    merged: list[list[int]] = []
    for begin, end in sorted(drives):
        begin, end = max(begin, lo), min(end, hi - 1)
        if end <= begin:
            continue
        if merged and begin <= merged[-1][1] + MINUTE_MS:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    return [(b, e) for b, e in merged]


@dataclass
class _Emitter:
    """Builds event lines (with line-level quirks) into per-name-day buckets."""

    rng: random.Random
    quirk_rate: float
    step_ms: int
    base: int
    days: int
    buckets: list[list[tuple[int, str]]]

    def put(self, at: int, line: str) -> None:
        day = (at - self.base) // DAY_MS
        if 0 <= day < self.days:
            self.buckets[day].append((at, line))

    def quirk(self, kinds: tuple[str, ...]) -> str | None:
        r = self.rng.random()
        return kinds[int(r / self.quirk_rate)] if r < self.quirk_rate * len(kinds) else None

    def period(self, period: _Period) -> None:
        for at, kind, start, finish in period.events:
            extra = self.rng.choice(TOP_EXTRAS) if self.quirk(("extra",)) else ""
            data = f'"id":"{period.id}","start":"{_ts(start)}","finish":"{_ts(finish)}"'
            line = (
                f'{{"event":"{kind}","on":"operating_period","at":"{_ts(at)}",'
                f'"data":{{{data}}},"organization_id":"{period.org}"{extra}}}'
            )
            self.put(at, line)

    def shift(self, v: _Vehicle, begin: int, end: int) -> None:
        self.lifecycle(v, "register", begin)
        at, step = begin, self.step_ms
        while True:
            dt_ms = max(1, int(step * (0.75 + 0.5 * self.rng.random())))
            if at + dt_ms >= end:
                break
            at += dt_ms
            _move(self.rng, v, dt_ms / 1000)
            self.update(v, at)
        self.lifecycle(v, "deregister", end)

    def lifecycle(self, v: _Vehicle, event: str, at: int) -> None:
        kind = self.quirk(VEHICLE_QUIRKS)
        data = f'"id":"{v.id}"'
        if kind == "null_location":
            data += ',"location":{"lat":null,"lng":null,"at":null}'
        self.put(at, _line(self.rng, event, at, data, v.org, kind))

    def update(self, v: _Vehicle, at: int) -> None:
        lat, lng = _num(round(v.lat, 5)), _num(round(v.lng, 5))
        r = self.rng.random()
        if r >= self.quirk_rate * len(UPDATE_QUIRKS):
            located = at - self.rng.randint(1, 1_500) if r > 1 - STALE_FIX_RATE else at
            self.put(at, _update_line(at, v.id, lat, lng, located, v.org))
            return
        kind = UPDATE_QUIRKS[int(r / self.quirk_rate)]
        if kind == "glitch_zero":
            lat = lng = "0"
        elif kind == "glitch_range":
            lat, lng = _num(round(v.lat + 100, 5)), _num(round(v.lng - 200, 5))
        elif kind == "repeated_fix":
            resent = at + self.rng.randint(200, 2_500)
            self.put(resent, _update_line(resent, v.id, lat, lng, at, v.org))
        if kind in ("no_location", "null_latlng"):
            loc = (
                ""
                if kind == "no_location"
                else f',"location":{{"lat":null,"lng":null,"at":"{_ts(at)}"}}'
            )
            self.put(at, _line(self.rng, "update", at, f'"id":"{v.id}"{loc}', v.org, None))
            return
        loc = f'"location":{{"lat":{lat},"lng":{lng},"at":"{_ts(at)}"}}'
        self.put(at, _line(self.rng, "update", at, f'"id":"{v.id}",{loc}', v.org, kind))


def _update_line(at: int, vid: str, lat: str, lng: str, located: int, org: str) -> str:
    return (
        f'{{"event":"update","on":"vehicle","at":"{_ts(at)}","data":{{"id":"{vid}",'
        f'"location":{{"lat":{lat},"lng":{lng},"at":"{_ts(located)}"}}}},"organization_id":"{org}"}}'
    )


def _line(rng: random.Random, event: str, at: int, data: str, org: str, kind: str | None) -> str:
    """A vehicle line; `extra_fields` adds unknown fields, `missing_field` drops a required one."""
    omit = rng.choice(("at", "organization_id", "data.id")) if kind == "missing_field" else ""
    top = rng.choice(TOP_EXTRAS) if kind == "extra_fields" else ""
    if kind == "extra_fields":
        data += rng.choice(DATA_EXTRAS)
    if omit == "data.id":
        data = data.split(",", 1)[1] if "," in data else ""
    parts = [f'"event":"{event}"', '"on":"vehicle"']
    if omit != "at":
        parts.append(f'"at":"{_ts(at)}"')
    parts.append(f'"data":{{{data}}}')
    if omit != "organization_id":
        parts.append(f'"organization_id":"{org}"')
    return "{" + ",".join(parts) + top + "}"


def _move(rng: random.Random, v: _Vehicle, seconds: float) -> None:
    """Drive on at 10-50 km/h with gentle turns, bouncing off the city's bounding box."""
    v.heading += 0.5 * (rng.random() - 0.5)
    v.speed = min(13.9, max(2.8, v.speed + 2.0 * (rng.random() - 0.5)))
    metres = v.speed * seconds
    v.lat += metres * math.cos(v.heading) / M_PER_DEG_LAT
    v.lng += metres * math.sin(v.heading) / M_PER_DEG_LNG
    if not (LAT_MIN <= v.lat <= LAT_MAX and LNG_MIN <= v.lng <= LNG_MAX):
        v.heading += math.pi
        v.lat = min(LAT_MAX, max(LAT_MIN, v.lat))
        v.lng = min(LNG_MAX, max(LNG_MIN, v.lng))


def _chunk(events: list[tuple[int, str]], min_lines: int) -> list[tuple[str, list[str]]]:
    """Cut a name-day's events (sorted by at) into objects named by their first event's second:
    a new object after a few seconds and min_lines, or after a long span."""
    events.sort(key=lambda item: item[0])
    files: list[tuple[str, list[str]]] = []
    first, lines = -FILE_MAX_SPAN_MS, []
    for at, line in events:
        span = at - first
        full = span >= FILE_SECONDS_MS and len(lines) >= min_lines
        if (full or span >= FILE_MAX_SPAN_MS) and at // 1000 != first // 1000:
            first, lines = at, []
            files.append((_object_name(at), lines))
        lines.append(line)
    return files


def _file_quirks(
    rng: random.Random,
    rate: float,
    files: list[tuple[str, list[str]]],
    arriving: list[str],
    next_day: list[str] | None,
) -> None:
    """Duplicates, re-deliveries in the next day's files, reordering, truncated and junk lines."""
    for _name, lines in files:
        out: list[str] = []
        tail: list[str] = []
        for line in lines:
            out.append(line)
            r = rng.random()
            if r >= rate * len(FILE_QUIRKS):
                continue
            kind = FILE_QUIRKS[int(r / rate)]
            if kind == "duplicate":
                (out if rng.random() < 0.5 else tail).append(line)
            elif kind == "cross_day" and next_day is not None:
                next_day.append(line)
            elif kind == "out_of_order" and len(out) > 1:
                j = rng.randrange(max(0, len(out) - 20), len(out) - 1)
                out[j], out[-1] = out[-1], out[j]
            elif kind == "truncated":
                out.insert(len(out) - 1, line[: rng.randint(10, len(line) - 2)])
            elif kind == "garbage":
                out.append(rng.choice(GARBAGE))
            elif kind == "blank":
                out.append(rng.choice(("", "   ")))
        lines[:] = out + tail
    for line in arriving if files else []:
        lines = files[rng.randrange(len(files))][1]
        lines.insert(rng.randint(0, len(lines)), line)


class _LocalSink:
    """Objects as files under <out>/data/; expected.json beside data/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[Path] = []

    def prepare(self) -> None:
        data = self.root / "data"
        old = sorted(data.iterdir()) if data.is_dir() else []
        if old and not (self.root / "expected.json").exists():
            raise GenerateError(
                f"{data} already holds files not written by generate; use an empty dir"
            )
        for path in old:
            if path.is_file() and path.name.endswith("-events.json"):
                path.unlink()
        data.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, body: bytes) -> None:
        path = self.root / key
        path.write_bytes(body)
        self.written.append(path)

    def objects(self) -> list[Path]:
        return list(self.written)

    def finish(self, expected: bytes) -> str:
        from flows.lake import atomic_write_bytes

        atomic_write_bytes(self.root / "expected.json", expected)
        return str(self.root / "expected.json")


class _S3Sink:
    """Objects uploaded (public-read, concurrently) under s3://bucket/prefix/data/."""

    def __init__(self, url: str, endpoint_url: str | None, region: str) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise GenerateError(f"{url} names no bucket; use s3://bucket/prefix/")
        self.bucket, self.prefix = bucket, (prefix.rstrip("/") + "/" if prefix.strip("/") else "")
        self.where = endpoint_url or "AWS"
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.futures: list = []
        self.bodies: list[tuple[str, bytes]] = []

    def prepare(self) -> None:
        with _s3_errors(self.bucket, self.where):
            self.client.head_bucket(Bucket=self.bucket)
            listing = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}data/", MaxKeys=1
            )
        if listing.get("KeyCount", 0):
            raise GenerateError(
                f"s3://{self.bucket}/{self.prefix}data/ already holds objects; use an empty prefix"
            )

    def put(self, key: str, body: bytes) -> None:
        self.bodies.append((self.prefix + key, body))
        self.futures.append(self.pool.submit(self._upload, self.prefix + key, body))

    def _upload(self, key: str, body: bytes) -> None:
        with _s3_errors(self.bucket, self.where):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ACL="public-read",
                ContentType="application/json",
            )

    def objects(self) -> list[tuple[str, bytes]]:
        return list(self.bodies)

    def finish(self, expected: bytes) -> str:
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(cancel_futures=True)
        self._upload(f"{self.prefix}expected.json", expected)
        return f"s3://{self.bucket}/{self.prefix}expected.json"


class _s3_errors:
    """Turn boto errors into one-line GenerateErrors that name the bucket and endpoint."""

    def __init__(self, bucket: str, where: str) -> None:
        self.bucket, self.where = bucket, where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                msg = f"bucket '{self.bucket}' does not exist at {self.where}; create it first"
            elif code in ("403", "AccessDenied"):
                msg = f"access denied writing to bucket '{self.bucket}' at {self.where}"
            else:
                msg = f"S3 error {code} on bucket '{self.bucket}' at {self.where}"
            raise GenerateError(msg) from None
        if isinstance(exc, NoCredentialsError):
            raise GenerateError(f"no AWS credentials to write to bucket '{self.bucket}'") from None
        if isinstance(exc, BotoCoreError):
            raise GenerateError(f"cannot reach S3 endpoint {self.where}: {exc}") from None
        return False


def _plan(
    rng: random.Random, base: int, days: int, orgs: int, vehicles: int, events_per_day: int | None
) -> tuple[list[_Vehicle], list[_Period]]:
    """Organizations, vehicles, 3-4 periods per org and day, and every vehicle's shifts."""
    org_ids = [_uid(rng) for _ in range(orgs)]
    fleet = [
        _Vehicle(
            id=_uid(rng),
            org=org_ids[i % orgs],
            lat=rng.uniform(LAT_MIN, LAT_MAX),
            lng=rng.uniform(LNG_MIN, LNG_MAX),
            heading=rng.uniform(0, 2 * math.pi),
            speed=rng.uniform(2.8, 13.9),
        )
        for i in range(vehicles)
    ]
    free = 1
    if events_per_day is not None:  # enough free driving to reach the volume at ~5 s updates
        wanted = events_per_day / vehicles * DEFAULT_STEP_MS / (30 * MINUTE_MS)
        free = min(36, max(1, round(wanted)))
    periods: list[_Period] = []
    tag = f"{rng.getrandbits(24):06x}"  # keeps period ids of separate datasets apart
    for day in range(days):
        w0 = base + day * DAY_MS
        todays = [
            _plan_period(rng, f"op_{tag}_{len(periods) + i + 1}", org, k, w0, day == days - 1)
            for i, (org, k) in enumerate(
                (org, k) for org in org_ids for k in range(rng.randint(3, 4))
            )
        ]
        _plan_drives(rng, fleet, todays, w0, free)
        periods += todays
    for vehicle in fleet:
        vehicle.drives = _merge(vehicle.drives, base, base + days * DAY_MS)
    return fleet, periods


def _live_periods(periods: list[_Period]) -> list[tuple[str, int, int]]:
    """(org, start, finish) of the periods whose last event is a create."""
    return [(p.org, *p.bounds) for p in periods if max(p.events)[1] == "create"]


def _drivers(fleet: list[_Vehicle]):
    """Which vehicles of an organization drive at some time within [start, finish]."""

    def drivers(org: str, start: int, finish: int) -> list[str]:
        return [
            v.id
            for v in fleet
            if v.org == org and any(b <= finish and e >= start for b, e in v.drives)
        ]

    return drivers


def _step_ms(fleet: list[_Vehicle], periods: list[_Period], per_day: int | None, days: int) -> int:
    """Mean time between location updates: 5 s, or what reaches events_per_day."""
    if per_day is None:
        return DEFAULT_STEP_MS
    shifts = sum(len(v.drives) for v in fleet)
    active = sum(end - begin for v in fleet for begin, end in v.drives)
    updates = per_day * days - 2 * shifts - sum(len(p.events) for p in periods)
    return max(10, active // max(1, updates))


def _check_args(
    days: int, orgs: int, vehicles: int, quirk_rate: float, per_day: int | None, break_rate: float
) -> None:
    if days < 1 or orgs < 1 or vehicles < 1:
        raise GenerateError(
            f"days, orgs and vehicles must be >= 1 (got {days}, {orgs}, {vehicles})"
        )
    if not 0 <= quirk_rate <= 0.1:
        raise GenerateError(f"quirk_rate must be within [0, 0.1] (got {quirk_rate})")
    if per_day is not None and per_day < 1:
        raise GenerateError(f"events_per_day must be >= 1 (got {per_day})")
    if not 0 <= break_rate <= 1:
        raise GenerateError(f"break_rate must be within [0, 1] (got {break_rate})")


def generate(
    out: str,
    start: dt.date,
    days: int,
    orgs: int = 2,
    vehicles: int = 20,
    seed: int = 0,
    quirk_rate: float = 0.01,
    s3_endpoint_url: str | None = None,
    s3_region: str = "us-east-1",
    events_per_day: int | None = None,
    break_rate: float = 0.3,
) -> GenerateResult:
    """Write `days` days of objects named from `start` on, and expected.json beside data/.
    ``break_rate``: the chance that a vehicle driving in a period takes a break in it."""
    if isinstance(start, str):
        start = dt.date.fromisoformat(start)
    _check_args(days, orgs, vehicles, quirk_rate, events_per_day, break_rate)
    out = str(out)
    is_s3 = out.startswith("s3://")
    sink = _S3Sink(out, s3_endpoint_url, s3_region) if is_s3 else _LocalSink(Path(out))
    sink.prepare()
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    base = int(dt.datetime.combine(start, dt.time(3), dt.UTC).timestamp() * 1000)
    fleet, periods = _plan(rng, base, days, orgs, vehicles, events_per_day)
    step = _step_ms(fleet, periods, events_per_day, days)
    emitter = _Emitter(rng, quirk_rate, step, base, days, [[] for _ in range(days)])
    for period in periods:
        emitter.period(period)
    for vehicle in fleet:
        for begin, end in vehicle.drives:
            emitter.shift(vehicle, begin, end)
    end_ms = base + days * DAY_MS
    for planned in plan_breaks(
        seed, break_rate, quirk_rate, _live_periods(periods), _drivers(fleet), end_ms
    ):
        for at, line in break_lines(planned, _ts):
            emitter.put(at, line)
    min_lines = max(FILE_MIN_LINES, (events_per_day or 0) // FILES_PER_DAY)
    totals, late = _write_days(rng, quirk_rate, emitter.buckets, min_lines, sink)
    analysis = reference.analyze(sink.objects())
    params = {
        "start": start.isoformat(),
        "days": days,
        "orgs": orgs,
        "vehicles": vehicles,
        "seed": seed,
        "quirk_rate": quirk_rate,
        "events_per_day": events_per_day,
        "break_rate": break_rate,
        "name_clock_offset_hours": NAME_CLOCK_OFFSET_MS // HOUR_MS,
    }
    expected = {
        "params": params,
        "late_keys": late,
        "source_days": analysis.source_days(),
        "periods": analysis.periods(),
        "breaks": analysis.breaks(),
    }
    where = sink.finish(json.dumps(expected, indent=1, sort_keys=True).encode())
    return GenerateResult(out, totals[0], totals[1], totals[2], late, where)


def _write_days(
    rng: random.Random,
    rate: float,
    buckets: list[list[tuple[int, str]]],
    min_lines: int,
    sink: _LocalSink | _S3Sink,
) -> tuple[tuple[int, int, int], list[str]]:
    """Chunk each name-day into objects, add file quirks, write; returns totals and late keys."""
    files_n = lines_n = bytes_n = 0
    late: list[str] = []
    arriving: list[str] = []
    for day, events in enumerate(buckets):
        files = _chunk(events, min_lines)
        buckets[day] = []
        next_day: list[str] | None = [] if day + 1 < len(buckets) else None
        _file_quirks(rng, rate, files, arriving, next_day)
        arriving = next_day or []
        for name, lines in files:
            body = ("\n".join(lines) + "\n").encode()
            sink.put(f"data/{name}", body)
            files_n, lines_n, bytes_n = files_n + 1, lines_n + len(lines), bytes_n + len(body)
        late += [f"data/{name}" for name, _ in files if rng.random() < rate]
    return (files_n, lines_n, bytes_n), late
