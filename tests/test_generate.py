"""The synthetic generator: reproducible bytes, realistic content, every quirk present, object
naming on the 3-hour-behind clock, expected.json consistent with the lines, and S3 output."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from flows.tools import reference
from flows.tools.generate import GenerateError, generate

START = dt.date(2019, 6, 1)
SMALL = {"start": START, "days": 2, "orgs": 2, "vehicles": 6}
TOP_KEYS = {"event", "on", "at", "data", "organization_id"}
DATA_KEYS = {"id", "location", "start", "finish"}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def read_files(root: Path) -> dict[str, list[str]]:
    return {
        p.name: reference.split_lines(p.read_bytes()) for p in sorted((root / "data").iterdir())
    }


def name_clock(name: str) -> dt.datetime:
    y, m, d, hh, mm, ss = (int(x) for x in name.split("-")[:6])
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def quirky(tmp_path_factory) -> tuple[Path, dict[str, list[str]], dict]:
    """Three days at the highest quirk rate, shared by the quirk tests."""
    root = tmp_path_factory.mktemp("quirky")
    generate(str(root), START, 3, orgs=2, vehicles=8, seed=7, quirk_rate=0.1)
    return root, read_files(root), json.loads((root / "expected.json").read_text())


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (
        generate(str(tmp_path / n), seed=s, **SMALL) for n, s in (("a", 3), ("b", 3), ("c", 4))
    )
    assert a.files > 10 and a.lines > 1000
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")
    assert (a.files, a.lines, a.bytes) == (b.files, b.lines, b.bytes)
    written = list((tmp_path / "a" / "data").iterdir())
    assert len(written) == a.files
    assert sum(p.stat().st_size for p in written) == a.bytes


def test_lines_look_like_the_real_feed(tmp_path):
    generate(str(tmp_path), quirk_rate=0.0, **SMALL)
    files = read_files(tmp_path)
    first = next(line for lines in files.values() for line in lines if '"update"' in line)
    assert first.startswith('{"event":"update","on":"vehicle","at":"2019-06-0')
    assert list(json.loads(first)) == ["event", "on", "at", "data", "organization_id"]
    assert list(json.loads(first)["data"]["location"]) == ["lat", "lng", "at"]
    events = [reference.accept_line(line)[0] for lines in files.values() for line in lines]
    assert all(e is not None for e in events)  # no quirks asked, nothing rejected
    kinds = Counter((e["on"], e["event"]) for e in events)
    assert kinds[("vehicle", "register")] == kinds[("vehicle", "deregister")] > 6
    assert kinds[("vehicle", "update")] > 20 * kinds[("vehicle", "register")]
    assert {e["entity_id"] for e in events if e["on"] == "vehicle"}.__len__() == 6
    points = [e for e in events if e["is_valid_point"]]
    assert len(points) == kinds[("vehicle", "update")]
    assert all(52.45 <= p["lat"] <= 52.57 and 13.28 <= p["lng"] <= 13.52 for p in points)


def test_vehicles_move_at_city_speeds_with_updates_every_few_seconds(tmp_path):
    generate(str(tmp_path), quirk_rate=0.0, **SMALL)
    by_vehicle = defaultdict(list)
    for lines in read_files(tmp_path).values():
        for line in lines:
            e = reference.accept_line(line)[0]
            if e["is_valid_point"]:
                by_vehicle[e["entity_id"]].append((e["at"], e["lat"], e["lng"]))
    gaps, speeds = [], []
    for points in by_vehicle.values():
        points.sort()
        for (t1, la1, lo1), (t2, la2, lo2) in zip(points, points[1:], strict=False):
            seconds = (t2 - t1).total_seconds()
            if seconds < 60:  # same shift
                gaps.append(seconds)
                speeds.append(reference.haversine_km(la1, lo1, la2, lo2) / seconds * 3600)
    assert 3.0 <= min(gaps) and max(gaps) <= 7.0
    speeds.sort()
    median = speeds[len(speeds) // 2]
    assert 10 <= median <= 50
    assert speeds[int(len(speeds) * 0.95)] < 55  # rounding to 5 decimals adds a little


def test_objects_named_three_hours_behind_hold_events_of_d_and_d_plus_1(tmp_path):
    generate(str(tmp_path), quirk_rate=0.0, **SMALL)
    dates_by_day = defaultdict(set)
    for name, lines in read_files(tmp_path).items():
        ats = [reference.accept_line(line)[0]["at"] for line in lines]
        named = name_clock(name) + dt.timedelta(hours=3)
        assert named <= min(ats) < named + dt.timedelta(seconds=1)  # first event's second
        assert max(ats) - min(ats) <= dt.timedelta(minutes=16)
        day = dt.date.fromisoformat(name[:10])
        dates_by_day[day] |= {a.date() for a in ats}
    for day in (START, START + dt.timedelta(days=1)):
        assert dates_by_day[day] == {day, day + dt.timedelta(days=1)}


def test_expected_json_matches_the_written_lines(quirky):
    root, files, expected = quirky
    assert expected["params"]["quirk_rate"] == 0.1
    assert expected["source_days"] == reference.source_day_stats(root / "data")
    for stats in expected["source_days"].values():
        assert stats["lines"] == stats["events"] + stats["duplicates"] + stats["quarantined"]
        assert sum(stats["quarantine_reasons"].values()) == stats["quarantined"]
        assert sum(stats["event_dates"].values()) == stats["events"]
    assert sum(s["objects"] for s in expected["source_days"].values()) == len(files)
    assert set(expected["late_keys"]) <= {f"data/{name}" for name in files}
    assert expected["late_keys"]


def test_periods_include_midnight_deleted_recreated_and_split_over_days(quirky):
    _root, files, expected = quirky
    history = defaultdict(list)
    for name, lines in files.items():
        for line in lines:
            event = reference.accept_line(line)[0]
            if event and event["on"] == "operating_period":
                history[event["entity_id"]].append((event["at"], event["event"], name[:10]))
    sequences = {pid: [k for _, k, _ in sorted(set(h))] for pid, h in history.items()}
    assert any(seq == ["create", "delete", "create"] for seq in sequences.values())
    assert any(seq == ["create", "delete"] for seq in sequences.values())
    split = [pid for pid, h in history.items() if len({day for *_, day in h}) > 1]
    assert any(sequences[pid][-1] == "delete" for pid in split)
    periods = expected["periods"]
    assert any(p["start_at"][:10] != p["finish_at"][:10] for p in periods)
    assert any(p["is_deleted"] for p in periods) and not all(p["is_deleted"] for p in periods)
    live = [p for p in periods if not p["is_deleted"]]
    assert sum(p["vehicles"] > 0 for p in live) >= len(live) - 1
    for p in live:
        for v in p["vehicle_distances"].values():
            hours = (
                dt.datetime.fromisoformat(v["last_location_at"])
                - dt.datetime.fromisoformat(v["first_location_at"])
            ).total_seconds() / 3600
            if hours > 0.1:
                assert 5 < v["distance_km"] / hours < 55


def test_every_quirk_is_present(quirky):
    _root, files, _expected = quirky
    seen_day: dict[str, str] = {}
    quirks = Counter()
    fixes = defaultdict(set)
    for name, lines in files.items():
        counts = Counter(lines)
        quirks["duplicate_in_file"] += sum(n - 1 for line, n in counts.items() if n > 1 and line)
        for line in set(lines):
            if line and line.startswith("{") and seen_day.setdefault(line, name[:10]) < name[:10]:
                quirks["cross_day_duplicate"] += 1
        ats = []
        for line in lines:
            event, reason = reference.accept_line(line)
            if reason:
                quirks[reason.split(":")[0] if reason.startswith("invalid") else reason] += 1
                if reason == "invalid_json" and any(
                    o != line and o.startswith(line) for o in lines
                ):
                    quirks["truncated"] += 1
                continue
            ats.append(event["at"])
            doc = json.loads(line)
            quirks["extra_top"] += bool(set(doc) - TOP_KEYS)
            quirks["extra_data"] += bool(set(doc["data"]) - DATA_KEYS)
            location = doc["data"].get("location")
            if event["event"] == "update":
                quirks["no_location"] += location is None
                quirks["null_latlng"] += location is not None and location["lat"] is None
                if location and location["lat"] is not None:
                    quirks["glitch_zero"] += location["lat"] == 0 and location["lng"] == 0
                    quirks["glitch_range"] += (
                        abs(location["lat"]) > 90 or abs(location["lng"]) > 180
                    )
                    fixes[(event["entity_id"], event["location_at"])].add(event["at"])
            elif location is not None:
                quirks["register_null_location"] += location == {
                    "lat": None,
                    "lng": None,
                    "at": None,
                }
        quirks["out_of_order"] += any(b < a for a, b in zip(ats, ats[1:], strict=False))
    quirks["repeated_fix"] = sum(len(ats) > 1 for ats in fixes.values())
    wanted = [
        "duplicate_in_file",
        "cross_day_duplicate",
        "out_of_order",
        "truncated",
        "invalid_json",
        "empty_line",
        "missing_field",
        "extra_top",
        "extra_data",
        "glitch_zero",
        "glitch_range",
        "no_location",
        "null_latlng",
        "register_null_location",
        "repeated_fix",
    ]
    quirks["missing_field"] = sum(n for k, n in quirks.items() if k.startswith("missing_field"))
    assert {k: quirks[k] for k in wanted if quirks[k] < 3} == {}


def test_events_per_day_scales_volume(tmp_path):
    result = generate(str(tmp_path), START, 1, vehicles=10, quirk_rate=0.0, events_per_day=30_000)
    assert 25_000 <= result.lines <= 35_000
    assert 50 <= result.files <= 200  # about events_per_day / 300 lines an object


def test_rejects_bad_arguments_and_foreign_directories(tmp_path):
    with pytest.raises(GenerateError, match="quirk_rate"):
        generate(str(tmp_path / "x"), START, 1, quirk_rate=0.5)
    with pytest.raises(GenerateError, match="days"):
        generate(str(tmp_path / "x"), START, 0)
    foreign = tmp_path / "foreign"
    (foreign / "data").mkdir(parents=True)
    (foreign / "data" / "keep.txt").write_text("mine")
    with pytest.raises(GenerateError, match="not written by generate"):
        generate(str(foreign), START, 1)
    assert (foreign / "data" / "keep.txt").read_text() == "mine"


def test_regenerating_into_the_same_directory_replaces_the_old_objects(tmp_path):
    generate(str(tmp_path), seed=1, **SMALL)
    result = generate(str(tmp_path), seed=2, **{**SMALL, "days": 1})
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert len(names) == result.files
    assert all(n.startswith("2019-06-01") for n in names)


def test_writes_to_s3_with_public_objects(tmp_path, s3_client, s3_bucket, moto_endpoint):
    local = generate(str(tmp_path), seed=5, **SMALL)
    result = generate(f"s3://{s3_bucket}/feed/", seed=5, s3_endpoint_url=moto_endpoint, **SMALL)
    keys = [
        obj["Key"]
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for obj in page.get("Contents", [])
    ]
    data_keys = sorted(k for k in keys if k.startswith("feed/data/"))
    assert len(keys) == result.files + 1 == local.files + 1
    assert "feed/expected.json" in keys
    assert data_keys == sorted(f"feed/data/{p.name}" for p in (tmp_path / "data").iterdir())
    anonymous = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    body = anonymous.get_object(Bucket=s3_bucket, Key=data_keys[0])["Body"].read()
    assert body == (tmp_path / "data" / data_keys[0].rsplit("/", 1)[1]).read_bytes()
    remote = s3_client.get_object(Bucket=s3_bucket, Key="feed/expected.json")["Body"].read()
    assert (
        json.loads(remote)["periods"]
        == json.loads((tmp_path / "expected.json").read_text())["periods"]
    )
    with pytest.raises(GenerateError, match="already holds objects"):
        generate(f"s3://{s3_bucket}/feed/", s3_endpoint_url=moto_endpoint, **SMALL)


def test_missing_bucket_is_a_one_line_error(moto_endpoint, s3_client):
    with pytest.raises(GenerateError) as info:
        generate("s3://no-such-bucket-here/", s3_endpoint_url=moto_endpoint, **SMALL)
    message = str(info.value)
    assert "no-such-bucket-here" in message and "does not exist" in message and "\n" not in message


def test_breaks_come_in_every_shape_and_lifecycle(tmp_path):
    generate(str(tmp_path), START, 3, orgs=2, vehicles=6, seed=3, quirk_rate=0.05, break_rate=1.0)
    expected = json.loads((tmp_path / "expected.json").read_text())
    analysis = reference.analyze(tmp_path / "data")
    history = defaultdict(list)
    quarantined = Counter()
    for name, lines in read_files(tmp_path).items():
        for line in lines:
            event, reason = reference.accept_line(line)
            if reason and '"on":"break"' in line:
                quarantined[reason] += 1
            if event and event["on"] == "break":
                history[event["entity_id"]].append((event["at"], event["event"], name[:10]))
    sequences = Counter(tuple(k for _, k, _ in sorted(set(h))) for h in history.values())
    for lifecycle in (("create",), ("create", "create"), ("create", "delete")):
        assert sequences[lifecycle] >= 3, sequences
    assert sequences[("create", "delete", "create")] >= 1, sequences
    late = [b for b, h in history.items() if len({day for *_, day in h}) > 1]
    assert len(late) >= 3  # later events in a later source day's files
    assert quarantined["missing_field:data.vehicle_id"] >= 1
    periods = [p for p in expected["periods"] if not p["is_deleted"]]
    live = [b for b in expected["breaks"] if not b["is_deleted"]]
    shapes = Counter()
    for b in live:
        overlapped = [
            p
            for p in periods
            if p["organization_id"] == b["organization_id"]
            and b["start_at"] <= p["finish_at"]
            and b["finish_at"] >= p["start_at"]
        ]
        assert overlapped, b  # every live break falls in a live period of its organization
        shapes["crosses_start"] += any(b["start_at"] < p["start_at"] for p in overlapped)
        shapes["crosses_finish"] += any(b["finish_at"] > p["finish_at"] for p in overlapped)
        start = dt.datetime.fromisoformat(b["start_at"])
        finish = dt.datetime.fromisoformat(b["finish_at"])
        shapes["no_points"] += not any(
            vehicle == b["vehicle_id"] and start <= at <= finish for vehicle, at in analysis.points
        )
    assert min(shapes.values()) >= 2 and len(shapes) == 3, shapes
    assert any(v["break_distance_km"] > 0 for p in periods for v in p["vehicle_distances"].values())


def test_no_breaks_at_rate_zero(tmp_path):
    generate(str(tmp_path), break_rate=0.0, **SMALL)
    lines = [line for ls in read_files(tmp_path).values() for line in ls]
    assert lines and not any('"on":"break"' in line for line in lines)
    assert json.loads((tmp_path / "expected.json").read_text())["breaks"] == []
    with pytest.raises(GenerateError, match="break_rate must be within"):
        generate(str(tmp_path / "x"), START, 1, break_rate=1.5)
