"""The reference oracle on hand-built cases whose answers are worked out here, and on the real
door2door sample."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from flows.tools import reference

ORG = "org-a"
TV_TOWER = (52.520815, 13.409419)
BRANDENBURG_GATE = (52.516275, 13.377704)


def hand_haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Written out independently of flows.tools.reference: R = 6371.0088 km."""
    la1, lo1, la2, lo2 = (x * math.pi / 180 for x in (*a, *b))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def update(vid: str, at: str, lat, lng, *, org: str = ORG, location_at: str | None = None) -> str:
    location = {"lat": lat, "lng": lng, "at": location_at or at}
    return json.dumps(
        {
            "event": "update",
            "on": "vehicle",
            "at": at,
            "data": {"id": vid, "location": location},
            "organization_id": org,
        }
    )


def period(event: str, pid: str, at: str, start: str, finish: str, org: str = ORG) -> str:
    data = {"id": pid, "start": start, "finish": finish}
    return json.dumps(
        {"event": event, "on": "operating_period", "at": at, "data": data, "organization_id": org}
    )


def obj(name: str, *lines: str) -> tuple[str, bytes]:
    return (f"data/{name}", ("\n".join(lines) + "\n").encode())


def answer(*objects: tuple[str, bytes]) -> dict[str, dict]:
    return {
        p["operating_period_id"]: p for p in reference.answer_from_files(list(objects))["periods"]
    }


OP = period("create", "op", "2019-06-01T09:00:00Z", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z")


def test_tv_tower_to_brandenburg_gate_is_about_2_2_km():
    d = reference.haversine_km(*TV_TOWER, *BRANDENBURG_GATE)
    assert d == pytest.approx(hand_haversine(TV_TOWER, BRANDENBURG_GATE), rel=1e-12)
    assert 2.19 < d < 2.22  # about 2.2 km on a map


def test_one_vehicle_two_points_gives_their_distance():
    got = answer(
        obj(
            "2019-06-01-07-00-0-events.json",
            OP,
            update("v1", "2019-06-01T10:10:00Z", *TV_TOWER),
            update("v1", "2019-06-01T10:20:00Z", *BRANDENBURG_GATE),
        )
    )["op"]
    expected = hand_haversine(TV_TOWER, BRANDENBURG_GATE)
    assert got["vehicles"] == 1
    assert got["total_distance_km"] == pytest.approx(expected, rel=1e-12)
    assert got["avg_distance_km"] == pytest.approx(expected, rel=1e-12)
    assert got["vehicle_distances"]["v1"]["location_points"] == 2
    assert got["vehicle_distances"]["v1"]["first_location_at"] == "2019-06-01T10:10:00.000000Z"
    assert (got["start_at"], got["is_deleted"]) == ("2019-06-01T10:00:00.000000Z", False)


def test_bounds_are_inclusive_and_a_millisecond_outside_is_not():
    got = answer(
        obj(
            "2019-06-01-07-00-0-events.json",
            OP,
            update("v1", "2019-06-01T09:59:59.999Z", 52.0, 13.0),  # 1 ms before start
            update("v1", "2019-06-01T10:00:00.000Z", *TV_TOWER),  # exactly start
            update("v1", "2019-06-01T11:00:00.000Z", *BRANDENBURG_GATE),  # exactly finish
            update("v1", "2019-06-01T11:00:00.001Z", 53.0, 14.0),  # 1 ms after finish
        )
    )["op"]["vehicle_distances"]["v1"]
    assert got["location_points"] == 2
    assert got["distance_km"] == pytest.approx(hand_haversine(TV_TOWER, BRANDENBURG_GATE))


def test_points_dedup_by_vehicle_and_location_at_keeping_earliest_at():
    far = (52.6, 13.6)
    got = answer(
        obj(
            "2019-06-01-07-00-0-events.json",
            OP,
            update("v1", "2019-06-01T10:10:00Z", *TV_TOWER),
            # the same fix (location.at) re-sent later with other coordinates: the first wins
            update("v1", "2019-06-01T10:20:05Z", *far, location_at="2019-06-01T10:20:00Z"),
            update(
                "v1", "2019-06-01T10:20:01Z", *BRANDENBURG_GATE, location_at="2019-06-01T10:20:00Z"
            ),
        )
    )["op"]["vehicle_distances"]["v1"]
    assert got["location_points"] == 2
    assert got["distance_km"] == pytest.approx(hand_haversine(TV_TOWER, BRANDENBURG_GATE))


def test_points_ordered_by_location_at_not_by_arrival():
    middle = (52.52, 13.39)
    got = answer(
        obj(
            "2019-06-01-07-00-0-events.json",
            OP,
            update("v1", "2019-06-01T10:30:00Z", *BRANDENBURG_GATE),
            update("v1", "2019-06-01T10:10:00Z", *TV_TOWER),
            update("v1", "2019-06-01T10:31:00Z", *middle, location_at="2019-06-01T10:20:00Z"),
        )
    )["op"]["vehicle_distances"]["v1"]
    hand = hand_haversine(TV_TOWER, middle) + hand_haversine(middle, BRANDENBURG_GATE)
    assert got["distance_km"] == pytest.approx(hand, rel=1e-12)


def test_delete_then_recreate_restores_period_with_new_bounds():
    lines = [
        OP,
        period(
            "delete", "op", "2019-06-01T09:05:00Z", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"
        ),
        period(
            "create", "op", "2019-06-01T09:10:00Z", "2019-06-01T12:00:00Z", "2019-06-01T13:00:00Z"
        ),
        update("v1", "2019-06-01T10:30:00Z", *TV_TOWER),  # inside the old bounds only
        update("v1", "2019-06-01T12:10:00Z", *TV_TOWER),
        update("v1", "2019-06-01T12:20:00Z", *BRANDENBURG_GATE),
    ]
    got = answer(obj("2019-06-01-07-00-0-events.json", *lines))["op"]
    assert got["is_deleted"] is False
    assert (got["start_at"], got["finish_at"]) == (
        "2019-06-01T12:00:00.000000Z",
        "2019-06-01T13:00:00.000000Z",
    )
    assert got["vehicle_distances"]["v1"]["location_points"] == 2


def test_delete_wins_a_tie_with_create_and_deleted_periods_are_listed():
    tie = period(
        "delete", "op", "2019-06-01T09:00:00Z", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"
    )
    got = answer(obj("2019-06-01-07-00-0-events.json", tie, OP))["op"]
    assert got["is_deleted"] is True
    assert (got["vehicles"], got["avg_distance_km"], got["total_distance_km"]) == (0, None, 0.0)


def test_other_organizations_vehicles_and_glitches_are_excluded():
    got = answer(
        obj(
            "2019-06-01-07-00-0-events.json",
            OP,
            update("v1", "2019-06-01T10:10:00Z", *TV_TOWER),
            update("v1", "2019-06-01T10:11:00Z", 0, 0),  # exactly (0, 0)
            update("v1", "2019-06-01T10:12:00Z", 152.5, 13.4),  # lat out of range
            update("v1", "2019-06-01T10:13:00Z", None, None),  # null lat/lng: accepted, no point
            update("v1", "2019-06-01T10:20:00Z", *BRANDENBURG_GATE),
            update("v2", "2019-06-01T10:10:00Z", *TV_TOWER, org="org-b"),
            update("v2", "2019-06-01T10:20:00Z", *BRANDENBURG_GATE, org="org-b"),
        )
    )["op"]
    assert list(got["vehicle_distances"]) == ["v1"]
    assert got["vehicle_distances"]["v1"]["location_points"] == 2
    assert got["total_distance_km"] == pytest.approx(hand_haversine(TV_TOWER, BRANDENBURG_GATE))


def test_redelivery_in_another_days_file_counts_once_in_answer_and_per_day_in_stats():
    a = update("v1", "2019-06-01T10:10:00Z", *TV_TOWER)
    b = update("v1", "2019-06-01T10:20:00Z", *BRANDENBURG_GATE)
    day1 = obj("2019-06-01-07-00-0-events.json", OP, a, b, b, "", "{trunc")
    day2 = obj("2019-06-02-07-00-0-events.json", b)
    got = answer(day1, day2)["op"]
    assert got["total_distance_km"] == pytest.approx(hand_haversine(TV_TOWER, BRANDENBURG_GATE))
    stats = reference.source_day_stats([day1, day2])
    assert stats["2019-06-01"] == {
        "objects": 1,
        "lines": 6,
        "events": 3,
        "duplicates": 1,
        "quarantined": 2,
        "quarantine_reasons": {"empty_line": 1, "invalid_json": 1},
        "event_dates": {"2019-06-01": 3},
    }
    assert stats["2019-06-02"]["events"] == 1
    assert stats["2019-06-02"]["event_dates"] == {"2019-06-01": 1}


VALID = {
    "event": "update",
    "on": "vehicle",
    "at": "2019-06-01T18:17:10.101Z",
    "data": {
        "id": "v1",
        "location": {"lat": 52.45, "lng": 13.46, "at": "2019-06-01T18:17:10.101Z"},
    },
    "organization_id": "org",
}


def variant(**changes) -> str:
    """VALID with top-level changes; a value of ... removes the key; data.* keys edit data."""
    doc = json.loads(json.dumps(VALID))
    for key, value in changes.items():
        target, name = (doc["data"], key[5:]) if key.startswith("data_") else (doc, key)
        if value is ...:
            target.pop(name)
        else:
            target[name] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_line"),  # blank lines are kept and counted as quarantined
        ("   \t", "empty_line"),
        ('{"event":"update","on":"veh', "invalid_json"),  # truncated delivery
        ("<html>502 Bad Gateway</html>", "invalid_json"),
        ('{"lat": NaN}', "invalid_json"),  # not JSON, even if Python would read it
        ("[1, 2]", "not_an_object"),
        ("42", "not_an_object"),
        (variant(at=...), "missing_field:at"),
        (variant(at=None), "missing_field:at"),  # null is as good as missing
        (variant(event=...), "missing_field:event"),
        (variant(on=...), "missing_field:on"),
        (variant(data_id=...), "missing_field:data.id"),
        (variant(data=...), "missing_field:data.id"),
        (variant(organization_id=...), "missing_field:organization_id"),
        (variant(on="bus"), "unknown_entity"),
        (variant(event="teleport"), "unknown_event"),
        (variant(on="operating_period"), "unknown_event"),  # update is not a period event
        (variant(data_id=7), "invalid_type:data.id"),
        (variant(organization_id=["x"]), "invalid_type:organization_id"),
        (
            variant(data_location={"lat": "52.1", "lng": 13.4, "at": VALID["at"]}),
            "invalid_type:lat",
        ),
        (variant(data_location={"lat": 52.1, "lng": True, "at": VALID["at"]}), "invalid_type:lng"),
        (variant(at="yesterday"), "invalid_timestamp:at"),
        (variant(at=1559413030), "invalid_timestamp:at"),
        (
            variant(data_location={"lat": 1, "lng": 1, "at": "soon"}),
            "invalid_timestamp:data.location.at",
        ),
        (variant(at="1999-12-31T23:59:59.999Z"), "timestamp_out_of_range:at"),
        (variant(at="2100-01-01T00:00:00Z"), "timestamp_out_of_range:at"),
    ],
)
def test_rejections_name_the_first_rule_that_fails(text: str, reason: str):
    assert reference.accept_line(text) == (None, reason)


def test_period_create_needs_start_and_finish_but_delete_does_not():
    create = {
        "event": "create",
        "on": "operating_period",
        "at": "2019-06-01T18:00:00Z",
        "data": {"id": "op", "finish": "2019-06-01T19:00:00Z"},
        "organization_id": "o",
    }
    assert reference.accept_line(json.dumps(create)) == (None, "missing_field:data.start")
    delete = dict(create, event="delete")
    event, reason = reference.accept_line(json.dumps(delete))
    assert reason is None and event["period_start"] is None


@pytest.mark.parametrize(
    ("location", "valid"),
    [
        (..., False),  # update without a location is accepted but no point
        ({"lat": None, "lng": None, "at": VALID["at"]}, False),
        ({"lat": 0, "lng": 0, "at": VALID["at"]}, False),  # GPS cold start glitch
        ({"lat": 90.5, "lng": 13.4, "at": VALID["at"]}, False),
        ({"lat": 52.5, "lng": -180.5, "at": VALID["at"]}, False),
        ({"lat": 52.5, "lng": 13.4}, False),  # no location.at: no point
        ({"lat": 0, "lng": 13.4, "at": VALID["at"]}, True),  # only exactly (0, 0) is a glitch
        ({"lat": -90, "lng": 180, "at": VALID["at"]}, True),  # bounds are inclusive
    ],
)
def test_updates_are_accepted_and_flagged_as_points(location, valid: bool):
    event, reason = reference.accept_line(variant(data_location=location))
    assert reason is None
    assert event["is_valid_point"] is valid


def test_register_with_null_location_and_unknown_fields_is_accepted():
    line = json.dumps(
        {
            "event": "register",
            "on": "vehicle",
            "at": "2019-06-01T18:00:00Z",
            "data": {"id": "v", "location": {"lat": None, "lng": None, "at": None}, "battery": 80},
            "organization_id": "o",
            "api": "v2",
        }
    )
    event, reason = reference.accept_line(line)
    assert reason is None
    assert (event["lat"], event["location_at"], event["is_valid_point"]) == (None, None, False)


def test_timestamp_forms_parse_to_the_same_utc_instant_and_event_id():
    forms = [
        "2019-06-01T18:17:10.000Z",
        "2019-06-01T18:17:10Z",
        "2019-06-01T20:17:10+02:00",
        "2019-06-01T18:17:10",
    ]
    events = [reference.accept_line(variant(at=form))[0] for form in forms]
    assert {e["at"] for e in events} == {dt.datetime(2019, 6, 1, 18, 17, 10, tzinfo=dt.UTC)}
    assert len({e["event_id"] for e in events}) == 1


def test_event_id_ignores_key_order_and_extra_fields_but_not_content():
    base = reference.accept_line(variant())[0]["event_id"]
    reordered = json.dumps(dict(reversed(list(VALID.items()))))
    assert reference.accept_line(reordered)[0]["event_id"] == base
    assert reference.accept_line(variant(extra={"x": 1}))[0]["event_id"] == base
    moved = variant(data_location={"lat": 52.46, "lng": 13.46, "at": VALID["at"]})
    assert reference.accept_line(moved)[0]["event_id"] != base


def test_split_lines_tolerates_bom_and_crlf_and_flags_invalid_utf8():
    data = reference.BOM + b'{"a":1}\r\n\r\n\xff\xfe\n{"b":2}'
    assert reference.split_lines(data) == ['{"a":1}', "", None, '{"b":2}']
    assert reference.split_lines(b"") == []
    stats = reference.source_day_stats([("2019-06-01-x.json", data), ("notes.txt", b"{}\n")])
    assert list(stats) == ["2019-06-01"]  # names without a day are never selected
    assert stats["2019-06-01"]["quarantine_reasons"] == {
        "empty_line": 1,
        "invalid_json": 1,
        "missing_field:event": 2,
    }


def test_real_sample_is_fully_accepted_with_two_live_periods(sample_dir):
    analysis = reference.analyze(sample_dir / "data")
    stats = analysis.source_days()
    assert list(stats) == ["2019-06-01"]
    day = stats["2019-06-01"]
    assert (day["objects"], day["lines"], day["events"]) == (721, 35351, 35351)
    assert (day["duplicates"], day["quarantined"]) == (0, 0)
    assert day["event_dates"] == {"2019-06-01": 35351}
    periods = analysis.periods()
    assert [p["operating_period_id"] for p in periods] == ["op_1", "op_2"]
    assert not any(p["is_deleted"] for p in periods)
    op_1, op_2 = periods
    assert (op_1["start_at"], op_1["finish_at"]) == (
        "2019-06-01T18:23:04.079000Z",
        "2019-06-01T18:28:04.079000Z",
    )
    assert (op_1["vehicles"], op_2["vehicles"]) == (44, 100)
    # cross-check the vehicle counts by a plain scan (all stamps share one format and zone)
    lines = [
        json.loads(x)
        for f in (sample_dir / "data").iterdir()
        for x in f.read_text().split("\n")
        if x
    ]
    for p in periods:
        start, finish = p["start_at"][:23], p["finish_at"][:23]
        ids = {
            e["data"]["id"]
            for e in lines
            if e["event"] == "update" and start <= e["data"]["location"]["at"][:23] <= finish
        }
        assert len(ids) == p["vehicles"]
    # regression pins for the distances (computed once by this oracle)
    assert op_1["avg_distance_km"] == pytest.approx(4.9383938033507, rel=1e-9)
    assert op_2["avg_distance_km"] == pytest.approx(9.016877701063045, rel=1e-9)
