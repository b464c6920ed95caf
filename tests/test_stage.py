"""Staging raw JSON lines into typed events and quarantine, on real DuckDB over files in a
temporary lake."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows import stage
from flows.lake import Lake
from flows.stage import StageError, line_offsets, stage_day, stage_source_day

DAY = dt.date(2019, 6, 1)
UTC = dt.UTC
VID = "bac5188f-67c6-4965-81dc-4ef49622e280"


def update(
    at: str = "2019-06-01T18:17:10.101Z",
    lat: Any = 52.45133,
    lng: Any = 13.46045,
    vid: str = VID,
    **extra: Any,
) -> str:
    """A vehicle update line as the API sends it."""
    obj = {
        "event": "update",
        "on": "vehicle",
        "at": at,
        "data": {"id": vid, "location": {"lat": lat, "lng": lng, "at": at}},
        "organization_id": "org-id",
        **extra,
    }
    return json.dumps(obj, separators=(",", ":"))


def period(event: str = "create", at: str = "2019-06-01T18:17:04.086Z", **data: Any) -> str:
    body = {
        "id": "op_1",
        "start": "2019-06-01T18:17:04.079Z",
        "finish": "2019-06-01T18:22:04.079Z",
        **data,
    }
    obj = {
        "event": event,
        "on": "operating_period",
        "at": at,
        "data": body,
        "organization_id": "org-id",
    }
    return json.dumps(obj, separators=(",", ":"))


def brk(event: str = "create", at: str = "2019-06-01T18:19:00.000Z", **data: Any) -> str:
    """A driver's break line, shaped like an operating period plus its vehicle."""
    body = {
        "id": "br_1",
        "vehicle_id": VID,
        "start": "2019-06-01T18:19:00.000Z",
        "finish": "2019-06-01T18:20:30.000Z",
        **data,
    }
    obj = {"event": event, "on": "break", "at": at, "data": body, "organization_id": "org-id"}
    return json.dumps(obj, separators=(",", ":"))


def write_raw(lake: Lake, name: str, content: bytes | str, day: dt.date = DAY) -> Path:
    path = lake.raw_day(day) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


def rows(glob: str, order: str = "source_key, line_number") -> list[dict[str, Any]]:
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        rel = con.sql(f"select * from read_parquet('{glob}') order by {order}")
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def events(lake: Lake) -> list[dict[str, Any]]:
    return rows(lake.events_glob)


def quarantine(lake: Lake, day: dt.date = DAY) -> list[dict[str, Any]]:
    return rows(str(lake.quarantine_day(day) / "*.parquet"))


@pytest.fixture
def lake(lake_root: Path) -> Lake:
    return Lake(lake_root)


# line splitting (pure) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", [0]),  # an empty file has no lines
        (b"\xef\xbb\xbf", [3]),  # a BOM alone is no line either
        (b"a\nb\n", [0, 2, 4]),  # a final newline does not open an empty last line
        (b"a\nb", [0, 2, 3]),  # a last line without newline still counts
        (b"\n", [0, 1]),  # one blank line
        (b"\xef\xbb\xbfa\r\nb", [3, 6, 7]),  # BOM skipped, CRLF kept inside the line
    ],
)
def test_line_offsets(data: bytes, expected: list[int]) -> None:
    assert line_offsets(data).tolist() == expected


# acceptance -----------------------------------------------------------------------------------
def test_event_columns_and_event_id_follow_the_data_model(lake: Lake) -> None:
    write_raw(lake, "2019-06-01-15-17-10-events.json", lines(update(), period()))
    summary = stage_day(lake, DAY, ingested_at=dt.datetime(2030, 1, 1, tzinfo=UTC))
    got = events(lake)
    assert [r["event"] for r in got] == ["update", "create"]
    vehicle, created = got
    at = dt.datetime(2019, 6, 1, 18, 17, 10, 101000, tzinfo=UTC)
    assert vehicle["at"] == at and vehicle["location_at"] == at
    assert (vehicle["lat"], vehicle["lng"], vehicle["is_valid_point"]) == (52.45133, 13.46045, True)
    assert vehicle["entity_id"] == VID and vehicle["organization_id"] == "org-id"
    assert vehicle["period_start"] is None and vehicle["line_number"] == 1
    text = (
        f"update|vehicle|2019-06-01T18:17:10.101000Z|{VID}|org-id|52.45133|13.46045|"
        "2019-06-01T18:17:10.101000Z||"
    )
    assert vehicle["event_id"] == hashlib.md5(text.encode()).hexdigest()
    assert created["period_start"] == dt.datetime(2019, 6, 1, 18, 17, 4, 79000, tzinfo=UTC)
    assert created["lat"] is None and created["is_valid_point"] is False
    assert vehicle["source_key"] == "2019-06-01-15-17-10-events.json"
    assert vehicle["ingested_at"] == dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert (vehicle["event_date"], vehicle["source_day"]) == (DAY, DAY)
    assert summary.as_dict() | {"seconds": 0} == {
        "source_day": "2019-06-01",
        "files": 1,
        "lines": 2,
        "events": 2,
        "duplicates": 0,
        "quarantined": 0,
        "quarantine_reasons": {},
        "event_dates": {"2019-06-01": 2},
        "seconds": 0,
    }


def test_break_events_have_their_vehicle_and_bounds_and_older_ids_are_unchanged(
    lake: Lake,
) -> None:
    write_raw(lake, "2019-06-01-15-17-10-events.json", lines(brk(), period()))
    stage_day(lake, DAY)
    got = {r["on"]: r for r in events(lake)}
    created = got["break"]
    assert (created["entity_id"], created["break_vehicle_id"]) == ("br_1", VID)
    assert created["period_start"] == dt.datetime(2019, 6, 1, 18, 19, tzinfo=UTC)
    assert created["period_finish"] == dt.datetime(2019, 6, 1, 18, 20, 30, tzinfo=UTC)
    assert created["is_valid_point"] is False
    text = (
        "create|break|2019-06-01T18:19:00.000000Z|br_1|org-id||||"
        "2019-06-01T18:19:00.000000Z|2019-06-01T18:20:30.000000Z|" + VID
    )
    assert created["event_id"] == hashlib.md5(text.encode()).hexdigest()
    assert got["operating_period"]["break_vehicle_id"] is None
    period_text = (
        "create|operating_period|2019-06-01T18:17:04.086000Z|op_1|org-id||||"
        "2019-06-01T18:17:04.079000Z|2019-06-01T18:22:04.079000Z"
    )
    assert got["operating_period"]["event_id"] == hashlib.md5(period_text.encode()).hexdigest()


def test_exact_duplicates_within_a_day_are_counted_and_removed(lake: Lake) -> None:
    other = update(at="2019-06-01T18:20:00Z")
    write_raw(lake, "b.json", lines(update(), other, update()))
    write_raw(lake, "a.json", lines(other))
    summary = stage_day(lake, DAY)
    got = events(lake)
    assert (summary.lines, summary.events, summary.duplicates) == (4, 2, 2)
    # the first delivery wins: lowest source key, then line number
    assert [(r["source_key"], r["line_number"]) for r in got] == [("a.json", 1), ("b.json", 1)]
    assert len({r["event_id"] for r in got}) == 2


def test_same_instant_in_another_notation_is_a_duplicate(lake: Lake) -> None:
    write_raw(
        lake,
        "a.json",
        lines(update(at="2019-06-01T18:17:10.101Z"), update(at="2019-06-01T20:17:10.101+02:00")),
    )
    summary = stage_day(lake, DAY)
    assert (summary.events, summary.duplicates) == (1, 1)


BAD_LINES = [
    ("   \t", "empty_line"),
    ("", "empty_line"),
    ('{"event":"update","on":"vehicle"', "invalid_json"),
    ("<html><body><h1>502 Bad Gateway</h1></body></html>", "invalid_json"),
    ("}{", "invalid_json"),
    (update(lat=float("nan")), "invalid_json"),  # NaN is not JSON, though DuckDB reads it
    ('{"event":"update","on":"vehicle","at":"2019-06-01T18:17:10Z",}', "invalid_json"),
    ("[1, 2]", "not_an_object"),
    ("42", "not_an_object"),
    ('"update"', "not_an_object"),
    (update().replace('"event":"update",', ""), "missing_field:event"),
    (update().replace('"on":"vehicle",', ""), "missing_field:on"),
    (update().replace('"at":"2019-06-01T18:17:10.101Z",', "", 1), "missing_field:at"),
    (update().replace(f'"id":"{VID}",', ""), "missing_field:data.id"),
    (
        update().replace('"organization_id":"org-id"', '"organization_id":null'),
        "missing_field:organization_id",
    ),
    (period(start=None), "missing_field:data.start"),
    (period().replace(',"finish":"2019-06-01T18:22:04.079Z"', ""), "missing_field:data.finish"),
    (update().replace('"on":"vehicle"', '"on":"scooter"'), "unknown_entity"),
    (update().replace('"event":"update"', '"event":"create"'), "unknown_event"),
    (period(event="update"), "unknown_event"),
    (update(vid=7), "invalid_type:data.id"),
    (update(organization_id=["org"]), "invalid_type:organization_id"),
    (update(lat="52.45"), "invalid_type:lat"),
    (update(lng=True), "invalid_type:lng"),
    (
        update().replace('"location":{', '"location":"52.4,13.4","x":{'),
        "invalid_type:data.location",
    ),
    (update(at="yesterday"), "invalid_timestamp:at"),
    (update(at=1559413030), "invalid_timestamp:at"),
    (update(at="2019-06-31T10:00:00Z"), "invalid_timestamp:at"),
    (update(at="2019-06-01T24:00:00.000Z"), "invalid_timestamp:at"),  # DuckDB alone takes it
    (update(at="2019-06-01T12:00:00+25:00"), "invalid_timestamp:at"),
    (
        update().replace('"at":"2019-06-01T18:17:10.101Z"}', '"at":"18:17"}'),
        "invalid_timestamp:data.location.at",
    ),
    (period(start="soon"), "invalid_timestamp:data.start"),
    (period(finish="2019-06-01T18:22:04.079Q"), "invalid_timestamp:data.finish"),
    (update(at="1970-01-01T00:00:00Z"), "timestamp_out_of_range:at"),
    (
        update().replace('"at":"2019-06-01T18:17:10.101Z"}', '"at":"2100-01-01T00:00:00Z"}'),
        "timestamp_out_of_range:data.location.at",
    ),
    (period(start="1999-12-31T23:59:59.999Z"), "timestamp_out_of_range:data.start"),
    (period(finish="2150-01-01T00:00:00Z"), "timestamp_out_of_range:data.finish"),
    # every break line, a delete too, names its vehicle and bounds
    (brk().replace(f'"vehicle_id":"{VID}",', ""), "missing_field:data.vehicle_id"),
    (brk(vehicle_id=None), "missing_field:data.vehicle_id"),
    (brk(event="delete", start=None), "missing_field:data.start"),
    (brk(finish=None), "missing_field:data.finish"),
    (brk(id=None), "missing_field:data.id"),
    (brk(event="update"), "unknown_event"),
    (brk(vehicle_id=42), "invalid_type:data.vehicle_id"),
    (brk(start="after lunch"), "invalid_timestamp:data.start"),
    (brk(finish="2019-06-01T25:00:00Z"), "invalid_timestamp:data.finish"),
    (brk(start="1999-12-31T23:59:59Z"), "timestamp_out_of_range:data.start"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_rejected_line_goes_to_quarantine_with_reason_line_number_and_text(
    lake: Lake, bad: str, reason: str
) -> None:
    from flows.tools.reference import accept_line

    assert accept_line(bad) == (None, reason)  # the reference agrees
    write_raw(lake, "x.json", lines(update(), bad, update(at="2019-06-01T18:20:00Z")))
    summary = stage_day(lake, DAY)
    assert [(q["line_number"], q["raw_line"], q["reason"]) for q in quarantine(lake)] == [
        (2, bad, reason)
    ]
    assert (summary.events, summary.quarantined, summary.quarantine_reasons) == (2, 1, {reason: 1})
    assert [r["line_number"] for r in events(lake)] == [1, 3]


@pytest.mark.parametrize(
    "good",
    [
        update(at="2019-06-01T18:17:10Z"),  # no fraction
        update(at="2019-06-01T20:17:10.101+02:00"),  # offset
        update(at="2019-06-01T18:17:10.101"),  # naive means UTC
        update(at="2019-06-01T18:17:10.123456Z"),  # microseconds
        update(lat=None, lng=None),  # update without a fix: kept, not a point
        update().replace(
            ',"location":{"lat":52.45133,"lng":13.46045,"at":"2019-06-01T18:17:10.101Z"}', ""
        ),
        update(lat=52, lng=13),  # integers are numbers too
        period(event="delete", start=None, finish=None),  # a delete needs no bounds
        brk(),
        brk(event="delete", extra="ignored"),
        json.dumps(
            {
                "event": "register",
                "on": "vehicle",
                "at": "2019-06-01T18:00:00Z",
                "data": {"id": VID, "location": None},
                "organization_id": "org-id",
            }
        ),
    ],
)
def test_accepted_variants(lake: Lake, good: str) -> None:
    write_raw(lake, "x.json", lines(good))
    summary = stage_day(lake, DAY)
    assert (summary.events, summary.quarantined) == (1, 0), quarantine(lake)


def test_unknown_fields_are_ignored(lake: Lake) -> None:
    plain = update()
    noisy = json.loads(plain)
    noisy |= {"api_version": "2.3.1", "_meta": {"gateway": "gw-3"}}
    noisy["data"] |= {"battery": 87, "heading": 123.5}
    noisy["data"]["location"]["accuracy"] = 5
    write_raw(lake, "a.json", lines(json.dumps(noisy)))
    write_raw(lake, "b.json", lines(plain))
    summary = stage_day(lake, DAY)
    # the noisy line and the plain one are the same event: one kept, one duplicate
    assert (summary.events, summary.duplicates, summary.quarantined) == (1, 1, 0)
    assert events(lake)[0]["source_key"] == "a.json"


def test_glitch_points_are_flagged_not_dropped(lake: Lake) -> None:
    write_raw(
        lake,
        "g.json",
        lines(
            update(lat=152.1, lng=13.4, at="2019-06-01T18:00:01Z"),  # lat out of range
            update(lat=52.1, lng=-193.4, at="2019-06-01T18:00:02Z"),  # lng out of range
            update(lat=0, lng=0, at="2019-06-01T18:00:03Z"),  # null island
            update(lat=None, lng=None, at="2019-06-01T18:00:04Z"),
            update(lat=0, lng=13.4, at="2019-06-01T18:00:05Z"),  # on the meridian: fine
            update(lat=-90, lng=180, at="2019-06-01T18:00:06Z"),  # the bounds are inclusive
        ),
    )
    stage_day(lake, DAY)
    got = events(lake)
    assert [r["is_valid_point"] for r in got] == [False, False, False, False, True, True]
    assert [r["lat"] for r in got] == [152.1, 52.1, 0, None, 0, -90]


def test_out_of_order_lines_are_kept_with_their_line_numbers(lake: Lake) -> None:
    times = ["2019-06-01T18:00:03Z", "2019-06-01T18:00:01Z", "2019-06-01T18:00:02Z"]
    write_raw(lake, "o.json", lines(*(update(at=t) for t in times)))
    stage_day(lake, DAY)
    got = rows(lake.events_glob, order='"at"')
    assert [r["line_number"] for r in got] == [2, 3, 1]


def test_events_are_partitioned_by_event_date(lake: Lake) -> None:
    write_raw(
        lake,
        "2019-06-01-23-59-59-events.json",
        lines(
            update(at="2019-06-01T23:59:59Z"),
            update(at="2019-06-02T01:00:00Z"),
            update(at="2019-06-02T01:30:00+02:00"),  # 23:30Z on the 1st
        ),
    )
    summary = stage_day(lake, DAY)
    assert summary.event_dates == {DAY: 2, dt.date(2019, 6, 2): 1}
    late = rows(str(lake.events_partition(dt.date(2019, 6, 2), DAY) / "part-0.parquet"))
    assert [(r["line_number"], r["event_date"], r["source_day"]) for r in late] == [
        (2, dt.date(2019, 6, 2), DAY)
    ]
    assert [p.name for p in lake.events_partitions_of(DAY)] == ["source_day=2019-06-01"] * 2


# file-level oddities ------------------------------------------------------------------------
def test_bom_and_crlf_are_tolerated(lake: Lake) -> None:
    content = b"\xef\xbb\xbf" + lines(update(), "oops", period()).replace("\n", "\r\n").encode()
    write_raw(lake, "crlf.json", content)
    summary = stage_day(lake, DAY)
    assert (summary.lines, summary.events, summary.quarantined) == (3, 2, 1)
    assert [(q["line_number"], q["raw_line"]) for q in quarantine(lake)] == [(2, "oops")]


def test_empty_file_gives_zero_lines_and_an_empty_quarantine(lake: Lake) -> None:
    write_raw(lake, "empty.json", b"")
    summary = stage_day(lake, DAY)
    assert (summary.files, summary.lines, summary.events) == (1, 0, 0)
    assert lake.events_partitions_of(DAY) == [] and quarantine(lake) == []


def test_binary_garbage_is_quarantined_with_replacement_characters(lake: Lake) -> None:
    garbage = b"\x00\xff\xfe\x01PK\x03\x04\xc3("
    write_raw(
        lake,
        "bin.json",
        lines(update()).encode()
        + garbage
        + b"\n\x00\x00\n"
        + lines(update(at="2019-06-01T18:20:00Z")).encode(),
    )
    summary = stage_day(lake, DAY)
    assert (summary.lines, summary.events, summary.quarantined) == (4, 2, 2)
    assert [(q["line_number"], q["raw_line"], q["reason"]) for q in quarantine(lake)] == [
        (2, garbage.decode("utf-8", errors="replace"), "invalid_json"),
        (3, "\x00\x00", "invalid_json"),
    ]


def test_a_20_mb_line_does_not_crash(lake: Lake) -> None:
    huge = update(blob="x" * 20_000_000)
    write_raw(lake, "huge.json", lines(update(at="2019-06-01T18:20:00Z"), huge, huge[:-1]))
    summary = stage_day(lake, DAY)
    assert (summary.events, summary.quarantined) == (2, 1)
    assert [(q["line_number"], len(q["raw_line"])) for q in quarantine(lake)] == [
        (3, len(huge) - 1)
    ]


def test_source_key_comes_from_the_manifest(lake: Lake) -> None:
    write_raw(lake, "2019-06-01-15-17-10-events.json", lines(update()))
    write_raw(lake, "unlisted.json", lines(update(at="2019-06-01T18:20:00Z")))
    manifest = {"data/2019-06-01-15-17-10-events.json": {"name": "2019-06-01-15-17-10-events.json"}}
    lake.manifest_path(DAY).parent.mkdir(parents=True, exist_ok=True)
    lake.manifest_path(DAY).write_text(json.dumps(manifest))
    stage_day(lake, DAY)
    assert [r["source_key"] for r in events(lake)] == [
        "data/2019-06-01-15-17-10-events.json",
        "unlisted.json",
    ]


def test_missing_raw_day_is_a_clear_error(lake: Lake) -> None:
    with pytest.raises(StageError, match="no raw data for source day 2019-06-01"):
        stage_day(lake, DAY)


# replacement ------------------------------------------------------------------------------
def _strip_ingested(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "ingested_at"} for r in got]


def test_restaging_is_idempotent_and_replaces_partitions(lake: Lake) -> None:
    write_raw(lake, "a.json", lines(update(), "bad", update(at="2019-06-02T00:10:00Z")))
    stage_day(lake, DAY)
    first, first_q = events(lake), quarantine(lake)
    summary = stage_day(lake, DAY)
    assert _strip_ingested(events(lake)) == _strip_ingested(first)
    assert _strip_ingested(quarantine(lake)) == _strip_ingested(first_q)
    assert summary.events == 2 and len(first) == 2
    # the file is re-delivered without the late event and the bad line
    write_raw(lake, "a.json", lines(update()))
    summary = stage_day(lake, DAY)
    assert summary.event_dates == {DAY: 1}
    assert [p.parent.name for p in lake.events_partitions_of(DAY)] == ["date=2019-06-01"]
    assert len(events(lake)) == 1 and quarantine(lake) == []
    assert not any(lake.tmp_dir.iterdir()) and not any(lake.journal_dir.iterdir())


def test_restaging_a_day_leaves_other_days_alone(lake: Lake) -> None:
    other = dt.date(2019, 6, 2)
    write_raw(lake, "a.json", lines(update()))
    write_raw(lake, "b.json", lines(update(at="2019-06-01T23:00:00Z")), day=other)
    stage_day(lake, DAY)
    stage_day(lake, other)
    stage_day(lake, DAY)
    assert [(r["source_day"], r["event_date"]) for r in rows(lake.events_glob, "source_day")] == [
        (DAY, DAY),
        (other, DAY),
    ]


def test_a_crash_before_publish_leaves_the_old_partitions(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_raw(lake, "a.json", lines(update(), update(at="2019-06-02T00:10:00Z")))
    stage_day(lake, DAY)
    before = events(lake)
    write_raw(lake, "a.json", lines(update(at="2019-06-01T10:00:00Z")))

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(stage, "_write_quarantine", crash)
    with pytest.raises(OSError, match="disk full"):
        stage_day(lake, DAY)
    assert events(lake) == before
    assert not any(lake.tmp_dir.iterdir())


# real and generated data --------------------------------------------------------------------
def test_real_sample_stages_cleanly(lake: Lake, sample_dir: Path) -> None:
    raw = lake.raw_day(DAY)
    shutil.copytree(sample_dir / "data", raw)
    summary = stage_day(lake, DAY)
    assert (summary.files, summary.events, summary.quarantined) == (721, 35_351, 0)
    assert summary.event_dates == {DAY: 35_351}
    assert summary.lines == summary.events + summary.duplicates
    # rows are stored in input order (source key, then line number) without a sort
    with duckdb.connect() as con:
        stored = con.sql(
            f"select source_key, line_number from read_parquet('{lake.events_glob}')"
        ).fetchall()
    assert stored == sorted(stored) and len(stored) == 35_351


def test_counts_match_the_reference_on_generated_data(tmp_path: Path, lake: Lake) -> None:
    generate = pytest.importorskip("flows.tools.generate")
    out = tmp_path / "gen"
    generate.generate(
        out, dt.date(2019, 6, 1), days=3, orgs=2, vehicles=12, seed=7, quirk_rate=0.05
    )
    expected = json.loads((out / "expected.json").read_text())["source_days"]
    for path in sorted((out / "data").iterdir()):
        day = dt.date.fromisoformat(path.name[:10])
        write_raw(lake, path.name, path.read_bytes(), day=day)
    assert expected, "the generator wrote no source days"
    for day_text, want in expected.items():
        got = stage_day(lake, dt.date.fromisoformat(day_text)).as_dict()
        keys = ("lines", "events", "duplicates", "quarantined", "quarantine_reasons", "event_dates")
        assert {k: got[k] for k in keys} == {k: want[k] for k in keys}, day_text
    assert sum(want["duplicates"] for want in expected.values()) > 0
    assert sum(want["quarantined"] for want in expected.values()) > 0


def test_prefect_task_returns_the_summary(lake: Lake) -> None:
    """The task body (the pipeline tests run it inside flows); data errors are not retried."""
    assert (stage_source_day.name, stage_source_day.retries) == ("stage-source-day", 0)
    assert stage_source_day.timeout_seconds == stage.STAGE_TIMEOUT_SECONDS
    write_raw(lake, "a.json", lines(update(), "junk"))
    got = stage_source_day.fn(str(lake.root), "2019-06-01")
    assert (got["source_day"], got["events"], got["quarantine_reasons"]) == (
        "2019-06-01",
        1,
        {"invalid_json": 1},
    )
    with pytest.raises(StageError, match="not a date"):
        stage_source_day.fn(str(lake.root), "June 1st")
