"""Transform semantics on real DuckDB over tiny staged-events Parquet, and the incremental
invariant: any order of day-by-day runs, re-runs and late files give the all-at-once tables."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support_events import period_event, publish, vehicle_update, write_events

from flows.catalog import query, refresh_catalog
from flows.lake import Lake
from flows.transform import CURATED_SCHEMAS, TransformResult, build_curated_tables, transform

R_KM = 6371.0088
D1, D2, D3 = dt.date(2019, 6, 1), dt.date(2019, 6, 2), dt.date(2019, 6, 3)
TABLE_KEYS = {
    "fact_operating_period": ["operating_period_id"],
    "fact_break": ["break_id"],
    "fact_vehicle_operating_period": ["operating_period_id", "vehicle_id"],
    "fact_vehicle_event": ["event_id"],
    "dim_vehicle": ["vehicle_id"],
    "dim_organization": ["organization_id"],
    "dim_date": ["date_key"],
}


def lat_km(degrees: float) -> float:
    """Haversine of a pure north-south move is exactly R times the angle."""
    return R_KM * math.radians(degrees)


def haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlng = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlng / 2) ** 2
    return 2 * R_KM * math.asin(math.sqrt(a))


def curated(lake: Lake) -> dict[str, pl.DataFrame]:
    frames = {}
    for table, key in TABLE_KEYS.items():
        files = sorted(lake.curated_table(table).rglob("*.parquet"))
        if files:
            frames[table] = pl.concat([pl.read_parquet(f) for f in files]).sort(key)
        else:
            frames[table] = pl.DataFrame(schema=list(CURATED_SCHEMAS[table]))
    return frames


def vehicle_rows(lake: Lake) -> dict[tuple[str, str], dict]:
    frame = curated(lake)["fact_vehicle_operating_period"]
    return {(r["operating_period_id"], r["vehicle_id"]): r for r in frame.to_dicts()}


def periods(lake: Lake) -> dict[str, dict]:
    frame = curated(lake)["fact_operating_period"]
    return {r["operating_period_id"]: r for r in frame.to_dicts()}


def create(period: str, start: str, finish: str, at: str | None = None, **kw) -> dict:
    return period_event("create", period, at or start, start, finish, **kw)


@pytest.fixture
def lake(lake_root: Path) -> Lake:
    return Lake(lake_root)


def test_distance_is_haversine_over_consecutive_points_by_location_at(lake: Lake) -> None:
    # Points delivered out of order: distance follows location_at, not file order.
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T10:30:00Z", 52.53, 13.42),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.40),
            vehicle_update("v2", "2019-06-01T10:15:00Z", 52.40, 13.10),
        ],
    )
    publish(lake, [D1])
    rows = vehicle_rows(lake)
    expected = lat_km(0.01) + haversine(52.51, 13.40, 52.53, 13.42)
    assert rows[("p1", "v1")]["distance_km"] == pytest.approx(expected, rel=1e-12)
    assert rows[("p1", "v1")]["location_points"] == 3
    assert rows[("p1", "v1")]["first_location_at"].isoformat() == "2019-06-01T10:10:00+00:00"
    assert rows[("p1", "v2")]["distance_km"] == 0.0  # one point: takes part, distance 0
    assert rows[("p1", "v2")]["location_points"] == 1


def test_delete_wins_a_tie_with_create(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            period_event("delete", "p1", "2019-06-01T10:00:00Z", None, None),
        ],
    )
    publish(lake, [D1])
    assert periods(lake)["p1"]["is_deleted"] is True


def test_recreate_restores_a_deleted_period_with_the_latest_bounds(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T10:30:00Z"),
            period_event("delete", "p1", "2019-06-01T10:05:00Z", None, None),
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z", at="2019-06-01T10:06:00Z"),
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:45:00Z", 52.52, 13.40),  # only in the new window
        ],
    )
    publish(lake, [D1])
    period = periods(lake)["p1"]
    assert period["is_deleted"] is False
    assert period["finish_at"].isoformat() == "2019-06-01T11:00:00+00:00"
    assert period["created_at"].isoformat() == "2019-06-01T10:06:00+00:00"
    assert vehicle_rows(lake)[("p1", "v1")]["distance_km"] == pytest.approx(lat_km(0.02), rel=1e-12)


def test_bounds_are_inclusive_and_a_microsecond_outside_is_not(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T09:59:59.999999Z", 52.40, 13.40),
            vehicle_update("v1", "2019-06-01T10:00:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T11:00:00Z", 52.51, 13.40),
            vehicle_update("v1", "2019-06-01T11:00:00.000001Z", 52.90, 13.40),
        ],
    )
    publish(lake, [D1])
    row = vehicle_rows(lake)[("p1", "v1")]
    assert row["location_points"] == 2
    assert row["distance_km"] == pytest.approx(lat_km(0.01), rel=1e-12)


def test_points_of_another_organization_do_not_count(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z", organization_id="org-a"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40, organization_id="org-a"),
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.60, 13.40, organization_id="org-b"),
            vehicle_update("v1", "2019-06-01T10:30:00Z", 52.51, 13.40, organization_id="org-a"),
            vehicle_update("v9", "2019-06-01T10:30:00Z", 52.51, 13.40, organization_id="org-b"),
        ],
    )
    publish(lake, [D1])
    rows = vehicle_rows(lake)
    assert set(rows) == {("p1", "v1")}
    assert rows[("p1", "v1")]["distance_km"] == pytest.approx(lat_km(0.01), rel=1e-12)


def test_same_vehicle_and_location_at_counts_once_keeping_earliest_at_then_lowest_lat(
    lake: Lake,
) -> None:
    loc = {"location_at": "2019-06-01T10:20:00Z"}
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:21:00Z", 52.70, 13.40, **loc),  # later at
            vehicle_update("v1", "2019-06-01T10:20:30Z", 52.53, 13.40, **loc),  # higher lat
            vehicle_update("v1", "2019-06-01T10:20:30Z", 52.52, 13.40, **loc),  # kept
        ],
    )
    publish(lake, [D1])
    row = vehicle_rows(lake)[("p1", "v1")]
    assert row["location_points"] == 2
    assert row["distance_km"] == pytest.approx(lat_km(0.02), rel=1e-12)


def test_glitches_and_missing_locations_are_never_points(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:11:00Z", 0.0, 0.0),
            vehicle_update("v1", "2019-06-01T10:12:00Z", 91.0, 13.40),
            vehicle_update("v1", "2019-06-01T10:13:00Z", 52.50, -180.5),
            vehicle_update("v1", "2019-06-01T10:14:00Z", None, None, location_at=None),
            {"event": "register", "at": "2019-06-01T10:15:00Z", "entity_id": "v1"},
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.40),
        ],
    )
    publish(lake, [D1])
    row = vehicle_rows(lake)[("p1", "v1")]
    assert (row["location_points"], row["distance_km"]) == (2, pytest.approx(lat_km(0.01)))
    events = curated(lake)["fact_vehicle_event"]
    assert events.height == 7  # invalid points are kept, flagged
    assert events["is_valid_point"].sum() == 2


def test_period_spanning_midnight_across_event_dates_and_source_days(lake: Lake) -> None:
    # The create and the first point come in day 1's files, the later points in day 2's;
    # the points fall on both event dates.
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T23:50:00Z", "2019-06-02T00:10:00Z"),
            vehicle_update("v1", "2019-06-01T23:55:00Z", 52.50, 13.40),
        ],
    )
    first = publish(lake, [D1])
    assert vehicle_rows(lake)[("p1", "v1")]["distance_km"] == 0.0
    write_events(
        lake,
        D2,
        [
            vehicle_update("v1", "2019-06-02T00:05:00Z", 52.52, 13.40),
            vehicle_update("v1", "2019-06-02T00:09:00Z", 52.53, 13.40),
        ],
    )
    second = publish(lake, [D2])
    assert first.event_dates == [D1] and second.event_dates == [D2]
    assert second.recomputed_period_ids == ["p1"]
    row = vehicle_rows(lake)[("p1", "v1")]
    assert row["distance_km"] == pytest.approx(lat_km(0.03), rel=1e-12)
    assert row["location_points"] == 3
    assert sorted(curated(lake)["dim_date"]["date_key"].to_list()) == [D1, D2]


def test_a_line_redelivered_in_another_source_day_counts_once(lake: Lake) -> None:
    twice = vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.40)
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            twice,
        ],
    )
    write_events(lake, D2, [twice, vehicle_update("v1", "2019-06-01T10:30:00Z", 52.52, 13.40)])
    publish(lake, [D1])
    publish(lake, [D2])
    assert vehicle_rows(lake)[("p1", "v1")]["location_points"] == 3
    assert vehicle_rows(lake)[("p1", "v1")]["distance_km"] == pytest.approx(lat_km(0.02))
    tables = curated(lake)
    assert tables["fact_vehicle_event"].height == 3
    assert tables["dim_vehicle"].row(0, named=True)["events"] == 3


def test_dimensions_describe_vehicles_organizations_and_dates(lake: Lake) -> None:
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T22:00:00Z", "2019-06-03T01:00:00Z", organization_id="o1"),
            {"event": "register", "at": "2019-06-01T09:00:00Z", "entity_id": "v1"},
            vehicle_update("v1", "2019-06-01T10:00:00Z", 52.5, 13.4),
            {"event": "deregister", "at": "2019-06-01T12:00:00Z", "entity_id": "v1"},
            vehicle_update("v2", "2019-06-01T11:00:00Z", 52.5, 13.4, organization_id="o1"),
        ],
    )
    publish(lake, [D1])
    tables = curated(lake)
    v1 = tables["dim_vehicle"].row(0, named=True)
    assert (v1["events"], v1["registered_at"].hour, v1["deregistered_at"].hour) == (3, 9, 12)
    orgs = {r["organization_id"]: r["vehicles"] for r in tables["dim_organization"].to_dicts()}
    assert orgs == {"org-1": 1, "o1": 1}
    dates = tables["dim_date"]
    assert dates["date_key"].to_list() == [D1, D2, D3]  # period finish extends the range
    assert dates.row(0, named=True) | {"date_key": None} == {
        "date_key": None,
        "year": 2019,
        "quarter": 2,
        "month": 6,
        "day": 1,
        "day_of_week": 6,
        "is_weekend": True,
    }


def test_empty_lake_gives_empty_tables_with_the_contract_columns(lake: Lake, tmp_path) -> None:
    result = transform(lake, [D1], tmp_path / "out")
    assert result.rows == dict.fromkeys(result.rows, 0) and len(result.rows) == 7
    for table in ("fact_operating_period", "dim_vehicle"):
        frame = pl.read_parquet(tmp_path / "out" / table / "part-0.parquet")
        assert frame.columns == list(CURATED_SCHEMAS[table])
    # partitioned tables get no partition; what the warehouse receives still has the columns
    changes = tmp_path / "out" / "_changes" / "fact_vehicle_operating_period" / "part-0.parquet"
    assert pl.read_parquet(changes).columns == list(
        CURATED_SCHEMAS["fact_vehicle_operating_period"]
    )
    assert not list((tmp_path / "out" / "fact_vehicle_operating_period").iterdir())
    assert result.event_dates == [] and result.recomputed_period_ids == []


def test_swap_moves_remove_a_vehicle_event_partition_left_without_events(lake: Lake) -> None:
    write_events(lake, D1, [vehicle_update("v1", "2019-06-02T10:00:00Z", 52.5, 13.4)])
    publish(lake, [D1])
    assert (lake.curated_table("fact_vehicle_event") / "event_date=2019-06-02").is_dir()
    write_events(lake, D1, [vehicle_update("v1", "2019-06-01T10:00:00Z", 52.5, 13.4)])
    result = publish(lake, [D1])
    assert result.event_dates == [D1, D2]
    assert not (lake.curated_table("fact_vehicle_event") / "event_date=2019-06-02").exists()
    assert curated(lake)["fact_vehicle_event"]["event_date"].to_list() == [D1]


def test_a_period_staged_by_a_day_never_transformed_is_still_computed(lake: Lake) -> None:
    # Day 1 was staged but its transform never ran: day 2's run sees p1 as new and computes it.
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.40),
        ],
    )
    write_events(lake, D2, [vehicle_update("v1", "2019-06-02T10:10:00Z", 52.50, 13.40)])
    result = publish(lake, [D2])
    assert result.recomputed_period_ids == ["p1"]
    assert vehicle_rows(lake)[("p1", "v1")]["distance_km"] == pytest.approx(lat_km(0.01))


def test_prefect_task_returns_a_serializable_result(lake: Lake, tmp_path) -> None:
    write_events(lake, D1, [create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z")])
    out = tmp_path / "out"
    payload = build_curated_tables.fn(str(lake.root), ["2019-06-01"], str(out))
    assert payload["recomputed_period_ids"] == ["p1"]
    assert payload["rows"]["fact_operating_period"] == 1
    assert TransformResult.from_dict(payload).out_dir == out


# The incremental invariant ---------------------------------------------------------------


def day_rows() -> dict[dt.date, list[dict]]:
    """Three source days whose periods and points interleave across days and dates."""
    return {
        D1: [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T12:00:00Z"),
            create("p2", "2019-06-01T23:00:00Z", "2019-06-02T01:00:00Z", organization_id="o2"),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.41),
            vehicle_update("v2", "2019-06-01T23:30:00Z", 48.10, 11.50, organization_id="o2"),
            vehicle_update("v3", "2019-06-01T11:00:00Z", 0.0, 0.0),
        ],
        D2: [
            vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.41),  # re-delivered
            vehicle_update("v1", "2019-06-01T11:50:00Z", 52.55, 13.45),
            vehicle_update("v2", "2019-06-02T00:30:00Z", 48.12, 11.52, organization_id="o2"),
            period_event("delete", "p1", "2019-06-02T08:00:00Z", None, None),
            create("p3", "2019-06-02T09:00:00Z", "2019-06-02T10:00:00Z"),
            vehicle_update("v3", "2019-06-02T09:30:00Z", 52.40, 13.30),
        ],
        D3: [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z", at="2019-06-03T08:00:00Z"),
            vehicle_update("v2", "2019-06-02T00:40:00Z", 48.13, 11.50, organization_id="o2"),
            vehicle_update(
                "v3",
                "2019-06-03T09:00:00Z",
                52.41,
                13.30,
                location_at="2019-06-02T09:40:00Z",  # location.at differs from at
            ),
            vehicle_update("v4", "2019-06-02T09:45:00Z", 52.0, 13.0),
        ],
    }


LATE_D1 = [
    vehicle_update("v1", "2019-06-01T10:40:00Z", 52.52, 13.42),
    vehicle_update("v2", "2019-06-02T00:50:00Z", 48.14, 11.49, organization_id="o2"),
]


def assert_same_tables(actual: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    for table in TABLE_KEYS:
        assert_frame_equal(actual[table], expected[table], check_exact=False, rel_tol=1e-9)


def all_at_once(root: Path, days: dict[dt.date, list[dict]]) -> dict[str, pl.DataFrame]:
    lake = Lake(root)
    for day, rows in days.items():
        write_events(lake, day, rows)
    publish(lake, list(days))
    return curated(lake)


def assert_any_order_equals_all_at_once(
    root: Path, days: dict[dt.date, list[dict]], order: tuple[dt.date, ...]
) -> None:
    """Publishing the days one at a time in ``order`` leaves the tables of all at once."""
    expected = all_at_once(root / "once", days)
    lake = Lake(root / "daily")
    for day in order:
        write_events(lake, day, days[day])
        publish(lake, [day])
    assert_same_tables(curated(lake), expected)


def test_all_at_once_tables_hold_the_hand_computed_answer(tmp_path: Path) -> None:
    tables = all_at_once(tmp_path / "lake", day_rows())
    rows = {
        (r["operating_period_id"], r["vehicle_id"]): r["distance_km"]
        for r in tables["fact_vehicle_operating_period"].to_dicts()
    }
    assert rows == {
        ("p1", "v1"): pytest.approx(haversine(52.50, 13.40, 52.51, 13.41)),
        ("p2", "v2"): pytest.approx(
            haversine(48.10, 11.50, 48.12, 11.52) + haversine(48.12, 11.52, 48.13, 11.50)
        ),
        ("p3", "v3"): pytest.approx(lat_km(0.01)),
        ("p3", "v4"): 0.0,
    }
    assert tables["fact_operating_period"]["is_deleted"].to_list() == [False, False, False]


@pytest.mark.parametrize("order", list(itertools.permutations([D1, D2, D3])))
def test_day_by_day_in_any_order_equals_all_at_once(tmp_path: Path, order) -> None:
    assert_any_order_equals_all_at_once(tmp_path, day_rows(), order)


def test_rerun_and_late_file_for_an_earlier_day_equal_all_at_once(tmp_path: Path) -> None:
    days = day_rows()
    lake = Lake(tmp_path / "daily")
    for day in (D1, D2, D3):
        write_events(lake, day, days[day])
        publish(lake, [day])
    publish(lake, [D2])  # a re-run changes nothing
    assert_same_tables(curated(lake), all_at_once(tmp_path / "once", days))
    write_events(lake, D1, days[D1] + LATE_D1)  # a late file for day 1, re-staged
    publish(lake, [D1])
    with_late = {**days, D1: days[D1] + LATE_D1}
    assert_same_tables(curated(lake), all_at_once(tmp_path / "once-late", with_late))


# Against the independent reference on generated data ---------------------------------------


def stage_generated(tmp_path: Path, lake: Lake) -> tuple[dict, list[dt.date]]:
    """Generate 3 days with quirks, copy objects into the raw zone by name date, stage each day."""
    generate = pytest.importorskip("flows.tools.generate")
    stage = pytest.importorskip("flows.stage")
    reference = pytest.importorskip("flows.tools.reference")
    result = generate.generate(
        str(tmp_path / "gen"),
        D1,
        3,
        orgs=2,
        vehicles=4,
        seed=7,
        quirk_rate=0.05,
        events_per_day=3000,
    )
    days = set()
    for path in sorted((tmp_path / "gen" / "data").iterdir()):
        day = dt.date.fromisoformat(reference.source_day_of(path.name))
        lake.raw_day(day).mkdir(parents=True, exist_ok=True)
        (lake.raw_day(day) / path.name).write_bytes(path.read_bytes())
        days.add(day)
    for day in sorted(days):
        stage.stage_day(lake, day)
    return json.loads(Path(result.expected).read_text()), sorted(days)


def vehicle_rows_and_expected(tables: dict, expected: dict) -> tuple[dict, dict]:
    """The curated vehicle-period rows and the reference's, both by (period, vehicle)."""
    got = {
        (r["operating_period_id"], r["vehicle_id"]): r
        for r in tables["fact_vehicle_operating_period"].to_dicts()
    }
    want = {
        (p["operating_period_id"], vehicle): v
        for p in expected["periods"]
        for vehicle, v in p["vehicle_distances"].items()
    }
    return got, want


def iso_z(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_generated_days_published_out_of_order_match_the_reference(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    expected, days = stage_generated(tmp_path, lake)
    for day in [days[1], days[0], *days[2:]]:
        publish(lake, [day])
    tables = curated(lake)
    got_periods = {
        r["operating_period_id"]: (
            r["organization_id"],
            iso_z(r["start_at"]),
            iso_z(r["finish_at"]),
            r["is_deleted"],
        )
        for r in tables["fact_operating_period"].to_dicts()
    }
    want_periods = {
        p["operating_period_id"]: (
            p["organization_id"],
            p["start_at"],
            p["finish_at"],
            p["is_deleted"],
        )
        for p in expected["periods"]
    }
    assert got_periods == want_periods and len(want_periods) > 10
    got, want = vehicle_rows_and_expected(tables, expected)
    assert set(got) == set(want) and len(want) > 10
    for key, w in want.items():
        g = got[key]
        assert g["distance_km"] == pytest.approx(w["distance_km"], rel=1e-9, abs=1e-12), key
        assert g["location_points"] == w["location_points"], key
        assert iso_z(g["first_location_at"]) == w["first_location_at"], key
        assert iso_z(g["last_location_at"]) == w["last_location_at"], key
    refresh_catalog(lake)
    _, rows = query(lake, "select * from avg_distance_per_operating_period")
    answer = {r[0]: r[4:] for r in rows}
    live = [p for p in expected["periods"] if not p["is_deleted"]]
    assert set(answer) == {p["operating_period_id"] for p in live}
    for p in live:
        vehicles, avg_km, total_km = answer[p["operating_period_id"]]
        assert vehicles == p["vehicles"]
        assert total_km == pytest.approx(p["total_distance_km"], rel=1e-9, abs=1e-12)
        if p["avg_distance_km"] is None:
            assert avg_km is None
        else:
            assert avg_km == pytest.approx(p["avg_distance_km"], rel=1e-9)
