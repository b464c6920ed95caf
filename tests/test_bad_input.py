"""Bad input, end to end: raw files in the lake's raw zone staged by stage_day and
checked against the independent reference oracle (good lines become events, bad lines are
quarantined with a reason, nothing crashes, nothing is dropped silently, and fetched lines =
staged + duplicates + quarantined); then hostile ids, an unknown delete, 10,000 events at one
location.at and non-date object names through the full daily pipeline into PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from support_source import count_by_day, list_all

from flows.lake import Lake
from flows.source import LocalSource
from flows.stage import stage_day
from flows.tools.reference import analyze, source_day_of, source_day_stats

DAY = dt.date(2019, 6, 1)
NAME = "2019-06-01-15-17-4-events.json"
AT = "2019-06-01T18:17:10.101Z"


def event(
    at: Any = AT, vid: str = "veh-1", lat: Any = 52.5, lng: Any = 13.4, loc_at: Any = None, **top
) -> dict:
    """A vehicle update as the API sends it (``top`` overrides or removes top-level fields)."""
    obj = {
        "event": "update",
        "on": "vehicle",
        "at": at,
        "data": {"id": vid, "location": {"lat": lat, "lng": lng, "at": loc_at or _or_none(at)}},
        "organization_id": "org-1",
    }
    obj |= top
    return {k: v for k, v in obj.items() if v is not DROP}


DROP = object()


def _or_none(value: Any) -> Any:
    return None if value is DROP else value


def line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def ndjson(*objs: Any) -> bytes:
    return "".join(line(o) + "\n" for o in objs).encode()


def stage_and_compare(lake: Lake, files: dict[str, bytes]) -> dict:
    """Stage the files as one source day; the summary must equal the reference oracle's and
    every line read must be an event, a duplicate or a quarantined line."""
    for name, data in files.items():
        path = lake.raw_day(DAY) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    got = stage_day(lake, DAY).as_dict()
    expected = source_day_stats(list(files.items())).get(DAY.isoformat(), {})
    for figure in ("lines", "events", "duplicates", "quarantined", "quarantine_reasons"):
        assert got[figure] == expected.get(figure, 0 if figure != "quarantine_reasons" else {})
    assert got["event_dates"] == expected.get("event_dates", {})
    assert got["lines"] == got["events"] + got["duplicates"] + got["quarantined"]
    return got


def quarantine(lake: Lake) -> list[tuple]:
    glob = str(lake.quarantine_day(DAY) / "*.parquet")
    query = f"select line_number, reason, raw_line from read_parquet('{glob}') order by 1"
    with duckdb.connect() as con:
        return con.sql(query).fetchall()


@pytest.fixture
def lake(lake_root: Path) -> Lake:
    return Lake(lake_root)


GOOD = ndjson(event())
HUGE_VALID = line(event(blob="x" * 3_000_000)).encode()  # no final newline either
CASES: dict[str, tuple[bytes, tuple[int, int, int, int], dict[str, int]]] = {
    # name: (file bytes, (lines, events, duplicates, quarantined), quarantine reasons)
    "empty file: zero lines, nothing staged": (b"", (0, 0, 0, 0), {}),
    "one huge line (3 MB, no newline): one event": (HUGE_VALID, (1, 1, 0, 0), {}),
    "one huge non-JSON line: quarantined as invalid_json": (
        b"{" + b"x" * 3_000_000,
        (1, 0, 0, 1),
        {"invalid_json": 1},
    ),
    "UTF-8 BOM before the first line: ignored": (b"\xef\xbb\xbf" + GOOD, (1, 1, 0, 0), {}),
    "CRLF line ends: accepted": (GOOD.replace(b"\n", b"\r\n") * 2, (2, 1, 1, 0), {}),
    "JSON array on one line: not_an_object": (
        ("[" + line(event()) + "," + line(event(vid="v2")) + "]\n").encode(),
        (1, 0, 0, 1),
        {"not_an_object": 1},
    ),
    "pretty-printed JSON array: each fragment quarantined": (
        json.dumps([event()], indent=1).encode() + b"\n",
        (16, 0, 0, 16),
        {"invalid_json": 16},
    ),
    "valid JSON that is not an object: not_an_object": (
        b'42\n"update"\nnull\ntrue\n[]\n' + GOOD,
        (6, 1, 0, 5),
        {"not_an_object": 5},
    ),
    "missing on / event / at: missing_field": (
        ndjson(event(on=DROP), event(event=DROP), event(at=DROP), event(at=None)),
        (4, 0, 0, 4),
        {"missing_field:on": 1, "missing_field:event": 1, "missing_field:at": 2},
    ),
    "wrong types: lat as string, at not a timestamp": (
        ndjson(event(lat="52.5"), event(at=1559413030), event(at="yesterday"), event()),
        (4, 1, 0, 3),
        {"invalid_type:lat": 1, "invalid_timestamp:at": 2},
    ),
    "same instant with and without milliseconds or an offset: one event": (
        ndjson(
            event(at="2019-06-01T18:17:10Z"),
            event(at="2019-06-01T18:17:10.000Z"),
            event(at="2019-06-01T20:17:10+02:00"),
            event(at="2019-06-01T18:17:10.000000+00:00"),
            event(at="2019-06-01T18:17:10"),
        ),
        (5, 1, 4, 0),
        {},
    ),
    "far-future and far-past times: timestamp_out_of_range": (
        ndjson(
            event(at="2150-01-01T00:00:00Z"),
            event(at="1970-01-01T00:00:00Z"),
            event(at="0001-01-01T00:00:00Z"),
            event(at="9999-12-31T23:59:59.999Z"),
            event(loc_at="1900-01-01T00:00:00Z"),
        ),
        (5, 0, 0, 5),
        {"timestamp_out_of_range:at": 4, "timestamp_out_of_range:data.location.at": 1},
    ),
}


@pytest.mark.parametrize(("data", "counts", "reasons"), CASES.values(), ids=CASES.keys())
def test_bad_file_is_staged_like_the_reference(
    lake: Lake, data: bytes, counts: tuple, reasons: dict
) -> None:
    got = stage_and_compare(lake, {NAME: data})
    assert (got["lines"], got["events"], got["duplicates"], got["quarantined"]) == counts
    assert got["quarantine_reasons"] == reasons


def test_binary_garbage_is_quarantined_line_by_line_never_crashing(lake: Lake) -> None:
    garbage = random.Random(7).randbytes(64_000)
    got = stage_and_compare(lake, {NAME: GOOD + garbage + b"\n" + GOOD.replace(b"veh-1", b"v2")})
    assert got["events"] == 2 and got["quarantined"] == got["lines"] - 2 > 100
    assert set(got["quarantine_reasons"]) <= {"invalid_json", "empty_line"}
    rows = quarantine(lake)
    assert rows[0][0] == 2 and rows[-1][0] == got["lines"] - 1  # exact line numbers kept
    assert all(reason for _, reason, _ in rows)


def test_every_bad_file_at_once_adds_up_across_files(lake: Lake) -> None:
    files = {
        f"2019-06-01-{i:02d}-events.json": data for i, (data, _, _) in enumerate(CASES.values())
    }
    got = stage_and_compare(lake, files)
    assert got["files"] == len(CASES)
    assert got["quarantined"] == sum(c[1][3] for c in CASES.values())
    assert len(quarantine(lake)) == got["quarantined"]


# through the full daily pipeline ------------------------------------------------------------
SQL_ID = "x'); drop table warehouse.dim_vehicle; --"
ODD_IDS = [SQL_ID, 'veh,"quoted",comma', "line\nbreak\ttab", "uni\u00e7\u00f8de \U0001f695", "\\"]
ORG = "org'; delete from warehouse.load_audit; --"
T1, T2 = "2019-06-01T10:00:00.000Z", "2019-06-01T10:05:00.000Z"


def point(vid: str, at: str, lat: float, loc_at: str) -> dict:
    return event(at=at, vid=vid, lat=lat, lng=13.0, loc_at=loc_at, organization_id=ORG)


def pipeline_source(directory: Path) -> dict[str, bytes]:
    """A day with hostile ids, a delete for an unknown period, 10,000 updates of one vehicle
    at one location.at, bad lines, and objects whose names carry no date."""
    period = {"id": "op'); drop table x; --", "start": T1, "finish": "2019-06-01T11:00:00.000Z"}
    create = {"event": "create", "on": "operating_period", "at": T1, "data": period}
    ghost = {**create, "event": "delete", "data": {"id": "ghost"}}  # never created
    lines = [create | {"organization_id": ORG}, ghost | {"organization_id": ORG}]
    for n, vid in enumerate(ODD_IDS):
        lines += [point(vid, T1, 52.0, T1), point(vid, T2, 52.0 + 0.01 * (n + 1), T2)]
    base = dt.datetime(2019, 6, 1, 10, 0, tzinfo=dt.UTC)
    for i in range(10_000):  # one location.at, event times 1 ms apart: one point, not 10,000
        at = (base + dt.timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")
        lines.append(point("same-spot", at, 52.0 + i * 1e-4, T1))
    lines.append(point("same-spot", T2, 52.1, T2))
    files = {
        "2019-06-01-10-00-0-events.json": ndjson(*lines) + b"\xef\xbb\xbfnot json\r\n[1]\n",
        "README-events.json": GOOD,
        "2019-13-45-10-00-0-events.json": GOOD,
        "events-2019-06-01.json": GOOD,
    }
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


@pytest.mark.slow
def test_hostile_ids_and_odd_days_go_through_the_pipeline_intact(
    tmp_path: Path, pg_url: str, monkeypatch, prefect_backend: None
) -> None:
    from flows.pipeline import daily_pipeline

    source = tmp_path / "source"
    files = pipeline_source(source)
    monkeypatch.setenv("VDP_SOURCE_URL", str(source))
    monkeypatch.setenv("VDP_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("VDP_WAREHOUSE_URL", pg_url)

    summary = daily_pipeline(date=DAY)

    # names without a date are never selected, but they are counted
    assert count_by_day(list_all(LocalSource(source))) == ({DAY: 1}, 3)
    assert [source_day_of(n) for n in sorted(files)[:3]] == [DAY.isoformat(), None, None]
    assert summary["fetch"]["listed"] == 1
    assert [p.name for p in Lake(tmp_path / "lake").raw_day(DAY).iterdir()] == [sorted(files)[0]]
    reference = analyze(list(files.items()))
    expected = reference.source_days()[DAY.isoformat()]
    stage = summary["stage"]
    assert (
        stage["quarantine_reasons"]
        == expected["quarantine_reasons"]
        == {
            "invalid_json": 1,
            "not_an_object": 1,
        }
    )
    assert (stage["lines"], stage["events"], stage["duplicates"]) == (
        expected["lines"],
        expected["events"],
        expected["duplicates"],
    )

    with psycopg.connect(pg_url) as conn:
        vehicles = conn.execute("select vehicle_id from warehouse.dim_vehicle").fetchall()
        answer = conn.execute(
            "select operating_period_id, organization_id, vehicles, total_distance_km "
            "from warehouse.avg_distance_per_operating_period"
        ).fetchall()
        per_vehicle = dict(
            conn.execute(
                "select vehicle_id, location_points from warehouse.fact_vehicle_operating_period"
            ).fetchall()
        )
        audits = conn.execute("select count(*) from warehouse.load_audit").fetchone()[0]
    assert sorted(v for (v,) in vehicles) == sorted([*ODD_IDS, "same-spot"])
    (period,) = reference.periods()
    assert answer == [
        (
            period["operating_period_id"],
            ORG,
            len(ODD_IDS) + 1,
            pytest.approx(period["total_distance_km"]),
        )
    ]
    assert per_vehicle["same-spot"] == 2  # 10,000 events at one location.at count once
    assert period["vehicle_distances"]["same-spot"]["distance_km"] == pytest.approx(
        11.119, abs=1e-3
    )
    assert audits == 1  # the SQL fragments in ids were data, never statements
