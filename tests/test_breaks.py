"""Drivers' breaks on real DuckDB over tiny staged-events Parquet: which legs a break leaves out
of the distance (DESIGN.md "Breaks"), and that a break created, moved or deleted in a later
source day recomputes exactly the periods it overlaps, in any load order."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import polars as pl
import pytest
from support_events import break_event, period_event, publish, vehicle_update, write_events
from test_transform import (
    D1,
    D2,
    D3,
    all_at_once,
    assert_any_order_equals_all_at_once,
    create,
    curated,
    lat_km,
    vehicle_rows,
    vehicle_rows_and_expected,
)

from flows.lake import Lake

P1 = ("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z")


def track(vehicle: str = "v1", minutes: tuple[int, ...] = (0, 10, 20, 30, 40), **kw) -> list:
    """Points at 10:MM moving 0.01 degrees north each: every leg is lat_km(0.01)."""
    return [
        vehicle_update(vehicle, f"2019-06-01T10:{m:02d}:00Z", 52.50 + 0.01 * i, 13.40, **kw)
        for i, m in enumerate(minutes)
    ]


def brk(break_id: str, start: str, finish: str, vehicle: str = "v1", **kw) -> dict:
    at = kw.pop("at", "2019-06-01T09:00:00Z")
    return break_event("create", break_id, vehicle, at, start, finish, **kw)


def row_after(lake: Lake, rows: list[dict]) -> dict:
    write_events(lake, D1, [create(*P1), *rows])
    publish(lake, [D1])
    return vehicle_rows(lake)[("p1", "v1")]


@pytest.fixture
def lake(lake_root: Path) -> Lake:
    return Lake(lake_root)


@pytest.mark.parametrize(
    ("start", "finish", "left_out"),
    [
        # legs 10:00-10:10, 10:10-10:20, ...; a break touching 10:20 exactly touches both
        # legs that meet there
        ("2019-06-01T10:20:00Z", "2019-06-01T10:25:00Z", 2),
        # a break finishing exactly at a point touches the leg that starts there
        ("2019-06-01T09:50:00Z", "2019-06-01T10:00:00Z", 1),
        # a microsecond before the first point: no leg touched
        ("2019-06-01T09:50:00Z", "2019-06-01T09:59:59.999999Z", 0),
        # starting exactly at the last point touches the last leg only
        ("2019-06-01T10:40:00Z", "2019-06-01T10:50:00Z", 1),
        # a break with no point inside still leaves out the leg it falls in
        ("2019-06-01T10:12:00Z", "2019-06-01T10:18:00Z", 1),
        # a break crossing the period's start leaves out the legs it touches inside it
        ("2019-06-01T09:30:00Z", "2019-06-01T10:05:00Z", 1),
        # and one crossing its finish
        ("2019-06-01T10:38:00Z", "2019-06-01T11:30:00Z", 1),
    ],
)
def test_a_leg_touching_a_break_counts_as_break_distance(
    lake: Lake, start: str, finish: str, left_out: int
) -> None:
    row = row_after(lake, [*track(), brk("b1", start, finish)])
    assert row["location_points"] == 5
    assert row["distance_km"] == pytest.approx(lat_km(0.01) * (4 - left_out), rel=1e-9)
    assert row["break_distance_km"] == pytest.approx(lat_km(0.01) * left_out, rel=1e-9)
    plain = lat_km(0.04)
    assert row["distance_km"] + row["break_distance_km"] == pytest.approx(plain, rel=1e-9)


def test_without_breaks_distance_is_unchanged_and_break_distance_zero(lake: Lake) -> None:
    row = row_after(lake, track())
    assert row["distance_km"] == pytest.approx(lat_km(0.04), rel=1e-12)
    assert row["break_distance_km"] == 0.0


def test_two_overlapping_breaks_leave_each_leg_out_once(lake: Lake) -> None:
    breaks = [
        brk("b1", "2019-06-01T10:05:00Z", "2019-06-01T10:15:00Z"),
        brk("b2", "2019-06-01T10:12:00Z", "2019-06-01T10:25:00Z"),
    ]
    row = row_after(lake, [*track(), *breaks])
    assert row["distance_km"] == pytest.approx(lat_km(0.01), rel=1e-9)  # 10:30-10:40 only
    assert row["break_distance_km"] == pytest.approx(lat_km(0.03), rel=1e-9)


def test_a_break_of_another_vehicle_or_organization_changes_nothing(lake: Lake) -> None:
    breaks = [
        brk("b1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z", vehicle="v2"),
        brk("b2", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z", organization_id="org-2"),
    ]
    row = row_after(lake, [*track(), *track("v2", (5, 15)), *breaks])
    assert row["distance_km"] == pytest.approx(lat_km(0.04), rel=1e-12)
    assert row["break_distance_km"] == 0.0
    other = vehicle_rows(lake)[("p1", "v2")]
    assert (other["distance_km"], other["break_distance_km"]) == (0.0, pytest.approx(lat_km(0.01)))


def test_a_vehicle_whose_every_point_is_in_a_break_still_takes_part(lake: Lake) -> None:
    row = row_after(lake, [*track(), brk("b1", "2019-06-01T09:00:00Z", "2019-06-01T12:00:00Z")])
    assert (row["location_points"], row["distance_km"]) == (5, 0.0)
    assert row["break_distance_km"] == pytest.approx(lat_km(0.04), rel=1e-9)


def test_a_deleted_break_counts_nothing_and_a_later_create_restores_it(lake: Lake) -> None:
    bounds = ("2019-06-01T10:05:00Z", "2019-06-01T10:15:00Z")
    deleted = [
        brk("b1", *bounds, at="2019-06-01T09:00:00Z"),
        break_event("delete", "b1", "v1", "2019-06-01T09:30:00Z", *bounds),
    ]
    row = row_after(lake, [*track(), *deleted])
    assert row["break_distance_km"] == 0.0
    assert curated(lake)["fact_break"].row(0, named=True)["is_deleted"] is True
    moved = ("2019-06-01T10:35:00Z", "2019-06-01T10:36:00Z")  # re-created with other bounds
    row = row_after(lake, [*track(), *deleted, brk("b1", *moved, at="2019-06-01T09:45:00Z")])
    assert row["break_distance_km"] == pytest.approx(lat_km(0.01), rel=1e-9)
    fact = curated(lake)["fact_break"].row(0, named=True)
    assert fact["is_deleted"] is False and fact["start_at"].minute == 35


def test_a_delete_wins_a_tie_with_a_create(lake: Lake) -> None:
    bounds = ("2019-06-01T10:05:00Z", "2019-06-01T10:15:00Z")
    tie = [brk("b1", *bounds), break_event("delete", "b1", "v1", "2019-06-01T09:00:00Z", *bounds)]
    assert row_after(lake, [*track(), *tie])["break_distance_km"] == 0.0


# Incremental: breaks arriving in later source days ------------------------------------------


def break_days() -> dict[dt.date, list[dict]]:
    """Two periods of org-1 and one of org-2; breaks created late, moved, deleted and restored
    in later source days, some dated on other days than the points they cover."""
    p2 = ("p2", "2019-06-01T23:00:00Z", "2019-06-02T01:00:00Z")
    return {
        D1: [
            create(*P1),
            create(*p2),
            create("p3", *P1[1:], organization_id="o2"),
            *track(),
            *track("v9", (0, 30), organization_id="o2"),
            vehicle_update("v1", "2019-06-01T23:30:00Z", 52.50, 13.40),
            brk("b1", "2019-06-01T10:05:00Z", "2019-06-01T10:15:00Z"),  # with its points
        ],
        D2: [
            vehicle_update("v1", "2019-06-02T00:30:00Z", 52.52, 13.40),
            # late: covers day 1's points and moves b1 into p2's window
            brk("b1", "2019-06-01T23:40:00Z", "2019-06-02T00:00:00Z", at="2019-06-02T08:00:00Z"),
            brk("b2", "2019-06-01T10:25:00Z", "2019-06-01T10:26:00Z", at="2019-06-02T08:00:00Z"),
            brk(
                "b3",
                "2019-06-01T10:00:00Z",
                "2019-06-01T10:30:00Z",
                vehicle="v9",
                organization_id="o2",
                at="2019-06-02T08:00:00Z",
            ),
        ],
        D3: [
            break_event(
                "delete",
                "b2",
                "v1",
                "2019-06-03T08:00:00Z",
                "2019-06-01T10:25:00Z",
                "2019-06-01T10:26:00Z",
            ),
            brk("b1", "2019-06-01T10:35:00Z", "2019-06-01T10:45:00Z", at="2019-06-03T09:00:00Z"),
            brk("b4", "2019-06-01T10:00:00Z", "2019-06-01T10:00:00Z", at="2019-06-03T09:00:00Z"),
        ],
    }


def test_late_breaks_give_the_hand_computed_answer(tmp_path: Path) -> None:
    tables = all_at_once(tmp_path / "lake", break_days())
    rows = {
        (r["operating_period_id"], r["vehicle_id"]): (r["distance_km"], r["break_distance_km"])
        for r in tables["fact_vehicle_operating_period"].to_dicts()
    }
    leg = lat_km(0.01)
    # p1/v1: b1 ends at 10:35-10:45 (last leg), b4 is the instant 10:00 (first leg), b2 deleted
    assert rows[("p1", "v1")] == (pytest.approx(2 * leg), pytest.approx(2 * leg))
    assert rows[("p2", "v1")] == (pytest.approx(2 * leg), 0.0)  # b1 left p2's window again
    assert rows[("p3", "v9")] == (0.0, pytest.approx(lat_km(0.01)))
    live = {r["break_id"]: r["is_deleted"] for r in tables["fact_break"].to_dicts()}
    assert live == {"b1": False, "b2": True, "b3": False, "b4": False}


@pytest.mark.parametrize("order", list(itertools.permutations([D1, D2, D3])))
def test_breaks_day_by_day_in_any_order_equal_all_at_once(tmp_path: Path, order) -> None:
    assert_any_order_equals_all_at_once(tmp_path, break_days(), order)


def test_a_late_break_recomputes_exactly_the_periods_it_overlaps(lake: Lake) -> None:
    days = break_days()
    write_events(lake, D1, days[D1])
    publish(lake, [D1])
    moved_into_p2 = brk(
        "b1", "2019-06-01T23:40:00Z", "2019-06-02T00:00:00Z", at="2019-06-02T08:00:00Z"
    )
    write_events(lake, D2, [moved_into_p2])
    # old bounds overlap p1, new bounds p2; p3 (same window, other organization) is untouched
    assert publish(lake, [D2]).recomputed_period_ids == ["p1", "p2"]
    write_events(
        lake,
        D3,
        [
            brk(
                "b9",
                "2019-06-01T10:50:00Z",
                "2019-06-01T10:55:00Z",
                organization_id="o2",
                vehicle="v9",
                at="2019-06-03T08:00:00Z",
            )
        ],
    )
    assert publish(lake, [D3]).recomputed_period_ids == ["p3"]
    assert publish(lake, [D3]).recomputed_period_ids == []  # a re-run changes nothing
    write_events(lake, D2, [])  # the day re-staged without the break: b1 is back in p1
    assert publish(lake, [D2]).recomputed_period_ids == ["p1", "p2"]
    assert vehicle_rows(lake)[("p1", "v1")]["break_distance_km"] == pytest.approx(lat_km(0.02))


def test_a_break_event_with_no_period_around_recomputes_nothing(lake: Lake) -> None:
    write_events(lake, D1, [create(*P1), *track()])
    publish(lake, [D1])
    far = brk("b1", "2019-06-01T14:00:00Z", "2019-06-01T15:00:00Z", at="2019-06-02T08:00:00Z")
    write_events(lake, D2, [far, period_event("delete", "p0", "2019-06-02T08:00:00Z", None, None)])
    assert publish(lake, [D2]).recomputed_period_ids == []
    assert curated(lake)["fact_break"]["break_id"].to_list() == ["b1"]


# Against the independent reference on generated days with breaks ----------------------------


@pytest.fixture(scope="module")
def generated_with_breaks(tmp_path_factory) -> tuple[Path, dict]:
    import json

    from flows.tools.generate import generate

    out = tmp_path_factory.mktemp("breaks")
    result = generate(
        str(out), D1, 3, orgs=2, vehicles=5, seed=5, quirk_rate=0.02, break_rate=1.0,
        events_per_day=3000,
    )  # fmt: skip
    return out / "data", json.loads(Path(result.expected).read_text())


def stage_all(lake: Lake, data: Path) -> list[dt.date]:
    from flows.stage import stage_day
    from flows.tools.reference import source_day_of

    days = set()
    for path in sorted(data.iterdir()):
        day = dt.date.fromisoformat(source_day_of(path.name))
        lake.raw_day(day).mkdir(parents=True, exist_ok=True)
        (lake.raw_day(day) / path.name).write_bytes(path.read_bytes())
        days.add(day)
    for day in sorted(days):
        stage_day(lake, day)
    return sorted(days)


def iso_z(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_generated_days_with_breaks_match_the_reference_in_any_order(
    tmp_path: Path, generated_with_breaks, order
) -> None:
    data, expected = generated_with_breaks
    lake = Lake(tmp_path / "lake")
    days = stage_all(lake, data)
    for i in order:
        publish(lake, [days[i]])
    tables = curated(lake)
    got_breaks = {
        r["break_id"]: (r["vehicle_id"], r["organization_id"], iso_z(r["start_at"]),
                        iso_z(r["finish_at"]), r["is_deleted"])
        for r in tables["fact_break"].to_dicts()
    }  # fmt: skip
    want_breaks = {
        b["break_id"]: (b["vehicle_id"], b["organization_id"], b["start_at"], b["finish_at"],
                        b["is_deleted"])
        for b in expected["breaks"]
    }  # fmt: skip
    assert got_breaks == want_breaks and len(want_breaks) > 10
    got, want = vehicle_rows_and_expected(tables, expected)
    assert set(got) == set(want)
    with_breaks = [k for k, w in want.items() if w["break_distance_km"] > 0]
    assert len(with_breaks) > 5 and any(want[k]["distance_km"] > 0 for k in with_breaks)
    for key, w in want.items():
        for column in ("distance_km", "break_distance_km"):
            assert got[key][column] == pytest.approx(w[column], rel=1e-9, abs=1e-12), key
        assert got[key]["location_points"] == w["location_points"], key


def test_lake_views_show_breaks_and_read_events_staged_before_breaks(lake: Lake) -> None:
    from flows.catalog import query, refresh_catalog

    write_events(lake, D1, [create(*P1), *track()])
    old = next(lake.events_dir.rglob("*.parquet"))  # staged as the version before breaks did
    pl.read_parquet(old).drop("break_vehicle_id").write_parquet(old)
    write_events(lake, D2, [brk("b1", "2019-06-01T10:05:00Z", "2019-06-01T10:15:00Z")])
    publish(lake, [D1, D2])
    refresh_catalog(lake)
    _, rows = query(lake, 'select "on", count(break_vehicle_id) from events group by 1 order by 1')
    assert rows == [("break", 1), ("operating_period", 0), ("vehicle", 0)]
    _, rows = query(lake, "select break_id, vehicle_id, is_deleted from fact_break")
    assert rows == [("b1", "v1", False)]
    _, rows = query(lake, "select break_distance_km from fact_vehicle_operating_period")
    assert rows == [(pytest.approx(lat_km(0.02)),)]
