"""The analyst catalog: views over a real tiny lake, the BI answer view, empty zones, read-only
queries, refresh under an open reader, and the text table renderer."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import polars as pl
import pytest
from support_events import period_event, publish, vehicle_update, write_events

from flows.catalog import CatalogError, format_table, query, refresh_catalog
from flows.lake import Lake
from flows.transform import CURATED_SCHEMAS

D1, D2 = dt.date(2019, 6, 1), dt.date(2019, 6, 2)
KM_PER_CENTIDEGREE = 6371.0088 * math.radians(0.01)


def create(period: str, start: str, finish: str) -> dict:
    return period_event("create", period, start, start, finish)


@pytest.fixture
def lake(lake_root: Path) -> Lake:
    return Lake(lake_root)


@pytest.fixture
def built_lake(lake: Lake) -> Lake:
    """Two source days: p1 with two vehicles, p2 live without vehicles, p3 deleted; one line
    re-delivered on day 2; one quarantined line."""
    twice = vehicle_update("v1", "2019-06-01T10:20:00Z", 52.51, 13.40)
    write_events(
        lake,
        D1,
        [
            create("p1", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            create("p2", "2019-06-01T12:00:00Z", "2019-06-01T13:00:00Z"),
            create("p3", "2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
            period_event("delete", "p3", "2019-06-01T10:30:00Z", None, None),
            vehicle_update("v1", "2019-06-01T10:10:00Z", 52.50, 13.40),
            twice,
            vehicle_update("v2", "2019-06-01T10:15:00Z", 52.40, 13.40),
            vehicle_update("v2", "2019-06-01T10:25:00Z", 52.43, 13.40),
        ],
    )
    write_events(lake, D2, [twice])
    quarantine = lake.quarantine_day(D1)
    quarantine.mkdir(parents=True)
    pl.DataFrame(
        {
            "source_key": ["a.json"],
            "line_number": [7],
            "raw_line": ["{not json"],
            "reason": ["invalid_json"],
            "ingested_at": [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)],
            "source_day": [D1],
        }
    ).write_parquet(quarantine / "part-0.parquet")
    publish(lake, [D1])
    publish(lake, [D2])
    refresh_catalog(lake)
    return lake


def count(lake: Lake, view: str) -> int:
    return query(lake, f"select count(*) from {view}")[1][0][0]


def test_views_count_the_distinct_rows_of_each_zone(built_lake: Lake) -> None:
    counts = {
        view: count(built_lake, view)
        for view in [
            "staged_events",
            "events",
            "quarantine",
            "fact_operating_period",
            "fact_vehicle_operating_period",
            "fact_vehicle_event",
            "dim_vehicle",
            "dim_organization",
            "dim_date",
        ]
    }
    assert counts == {
        "staged_events": 9,  # every delivery
        "events": 8,  # the re-delivered line once
        "quarantine": 1,
        "fact_operating_period": 3,
        "fact_vehicle_operating_period": 4,  # p3 is deleted but keeps its rows
        "fact_vehicle_event": 4,
        "dim_vehicle": 2,
        "dim_organization": 1,
        "dim_date": 1,
    }


def test_events_view_keeps_the_earliest_source_day_of_a_redelivered_line(built_lake: Lake) -> None:
    sql = "select source_day from events where location_at = '2019-06-01 10:20:00+00'"
    assert query(built_lake, sql)[1] == [(D1,)]


def test_answer_view_has_live_periods_only_with_hand_computed_distances(built_lake: Lake) -> None:
    columns, rows = query(built_lake, "select * from avg_distance_per_operating_period")
    assert columns == [
        "operating_period_id",
        "organization_id",
        "start_at",
        "finish_at",
        "vehicles",
        "avg_distance_km",
        "total_distance_km",
    ]
    answer = {r[0]: r[4:] for r in rows}
    assert set(answer) == {"p1", "p2"}  # p3 was deleted
    v1, v2 = KM_PER_CENTIDEGREE, 3 * KM_PER_CENTIDEGREE
    assert answer["p1"][0] == 2
    assert answer["p1"][1] == pytest.approx((v1 + v2) / 2, rel=1e-12)
    assert answer["p1"][2] == pytest.approx(v1 + v2, rel=1e-12)
    assert answer["p2"] == (0, None, 0.0)


def test_empty_lake_views_exist_with_contract_columns_and_types(lake: Lake) -> None:
    refresh_catalog(lake)
    for table, schema in CURATED_SCHEMAS.items():
        described = query(lake, f"describe {table}")[1]
        assert [(r[0], r[1]) for r in described] == [
            (name, kind.upper().replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"))
            for name, kind in schema.items()
        ]
        assert count(lake, table) == 0
    assert count(lake, "events") == 0 and count(lake, "quarantine") == 0
    assert query(lake, "select * from avg_distance_per_operating_period")[1] == []


def test_query_builds_a_missing_catalog_and_refuses_writes(built_lake: Lake) -> None:
    built_lake.duckdb_path.unlink()
    assert count(built_lake, "dim_vehicle") == 2
    assert built_lake.duckdb_path.exists()
    with pytest.raises(CatalogError, match="query failed"):
        query(built_lake, "create table scratch as select 1")
    with pytest.raises(CatalogError, match="query failed"):
        query(built_lake, "select * from no_such_view")


def test_refresh_replaces_the_file_while_a_reader_holds_the_old_one(lake: Lake) -> None:
    refresh_catalog(lake)
    reader = duckdb.connect(str(lake.duckdb_path), read_only=True)
    try:
        write_events(lake, D1, [vehicle_update("v1", "2019-06-01T10:10:00Z", 52.5, 13.4)])
        publish(lake, [D1])
        refresh_catalog(lake)  # must not block on, or break, the open reader
        assert reader.sql("select count(*) from dim_vehicle").fetchall() == [(0,)]
    finally:
        reader.close()
    assert count(lake, "dim_vehicle") == 1
    assert not list(lake.tmp_dir.glob("catalog-*"))


def test_format_table_aligns_columns_and_counts_rows() -> None:
    text = format_table(
        ["period", "vehicles", "avg_km", "start"],
        [
            ("p1", 2, 2.2239016, dt.datetime(2019, 6, 1, 10, tzinfo=dt.UTC)),
            ("p-long", 0, None, None),
        ],
    )
    assert text.splitlines() == [
        "period | vehicles |   avg_km | start",
        "-------+----------+----------+--------------------------",
        "p1     |        2 | 2.223902 | 2019-06-01 10:00:00+00:00",
        "p-long |        0 |     NULL | NULL",
        "(2 rows)",
    ]
    assert format_table(["x"], []).splitlines() == ["x", "-", "(0 rows)"]
