"""Hand-built curated Parquet (the layout of docs/data-model.md "Curated tables") and helpers
that read the warehouse back, for the warehouse and load tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import psycopg

UTC = dt.UTC
TS = pl.Datetime("us", "UTC")
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "dim_organization": {
        "organization_id": pl.String,
        "first_seen_at": TS,
        "last_seen_at": TS,
        "vehicles": pl.Int64,
    },
    "dim_vehicle": {
        "vehicle_id": pl.String,
        "organization_id": pl.String,
        "first_seen_at": TS,
        "last_seen_at": TS,
        "registered_at": TS,
        "deregistered_at": TS,
        "events": pl.Int64,
    },
    "dim_date": {
        "date_key": pl.Date,
        "year": pl.Int64,
        "quarter": pl.Int64,
        "month": pl.Int64,
        "day": pl.Int64,
        "day_of_week": pl.Int64,
        "is_weekend": pl.Boolean,
    },
    "fact_operating_period": {
        "operating_period_id": pl.String,
        "organization_id": pl.String,
        "start_at": TS,
        "finish_at": TS,
        "is_deleted": pl.Boolean,
        "created_at": TS,
        "updated_at": TS,
    },
    "fact_break": {
        "break_id": pl.String,
        "vehicle_id": pl.String,
        "organization_id": pl.String,
        "start_at": TS,
        "finish_at": TS,
        "is_deleted": pl.Boolean,
        "created_at": TS,
        "updated_at": TS,
    },
    "fact_vehicle_operating_period": {
        "operating_period_id": pl.String,
        "vehicle_id": pl.String,
        "organization_id": pl.String,
        "distance_km": pl.Float64,
        "location_points": pl.Int64,
        "first_location_at": TS,
        "last_location_at": TS,
        "break_distance_km": pl.Float64,  # added by migration 006: the last column
    },
    "fact_vehicle_event": {
        "event_id": pl.String,
        "vehicle_id": pl.String,
        "organization_id": pl.String,
        "event": pl.String,
        "at": TS,
        "lat": pl.Float64,
        "lng": pl.Float64,
        "location_at": TS,
        "is_valid_point": pl.Boolean,
        "event_date": pl.Date,
    },
}
KEYS = {
    "dim_organization": "organization_id",
    "dim_vehicle": "vehicle_id",
    "dim_date": "date_key",
    "fact_operating_period": "operating_period_id",
    "fact_break": "break_id",
    "fact_vehicle_operating_period": "operating_period_id, vehicle_id",
    "fact_vehicle_event": "event_id",
}
D1, D2, D3 = dt.date(2019, 6, 1), dt.date(2019, 6, 2), dt.date(2019, 6, 3)


def ts(day: dt.date, hour: int, minute: int = 0, second: float = 0.0) -> dt.datetime:
    whole = int(second)
    micro = round((second - whole) * 1_000_000)
    return dt.datetime(day.year, day.month, day.day, hour, minute, whole, micro, tzinfo=UTC)


def _date_row(day: dt.date) -> tuple:
    dow = day.isoweekday()
    return (day, day.year, (day.month - 1) // 3 + 1, day.month, day.day, dow, dow >= 6)


def _event(eid: str, vehicle: str, org: str, kind: str, at: dt.datetime, lat, lng) -> tuple:
    valid = kind == "update" and lat is not None and (lat, lng) != (0.0, 0.0)
    location_at = at if lat is not None else None
    return (eid, vehicle, org, kind, at, lat, lng, location_at, valid, at.date())


@dataclass
class Curated:
    """Rows per curated table, as tuples in warehouse column order."""

    rows: dict[str, list[tuple]] = field(default_factory=dict)

    def with_rows(self, table: str, rows: list[tuple]) -> Curated:
        return replace(self, rows={**self.rows, table: rows})

    def write(self, root: Path) -> Path:
        """Write every table as Parquet under ``root`` as a transform hands it to the load:
        events partitioned by event_date, every other table's rows under ``_changes/``."""
        for table, schema in SCHEMAS.items():
            frame = pl.DataFrame(self.rows.get(table, []), schema=schema, orient="row")
            if table == "fact_vehicle_event":
                for (day,), part in frame.group_by("event_date"):
                    out = root / table / f"event_date={day.isoformat()}"
                    out.mkdir(parents=True, exist_ok=True)
                    part.write_parquet(out / "part-0.parquet")
                continue
            (root / "_changes" / table).mkdir(parents=True, exist_ok=True)
            frame.write_parquet(root / "_changes" / table / "part-0.parquet")
        return root


def base_curated() -> Curated:
    """Two organizations, three vehicles, four periods (one deleted, one without vehicles,
    one spanning midnight) and vehicle events on two days."""
    orgs = [
        ("org-a", ts(D1, 18), ts(D2, 1), 2),
        ("org-b", ts(D1, 19), ts(D3, 0, 20), 1),
    ]
    vehicles = [
        ("v1", "org-a", ts(D1, 18), ts(D1, 18, 30), ts(D1, 18), None, 3),
        ("v2", "org-a", ts(D1, 18, 5), ts(D2, 1), None, ts(D2, 1), 3),
        ("v3", "org-b", ts(D1, 19), ts(D3, 0, 20), ts(D1, 19), None, 2),
    ]
    periods = [
        ("p1", "org-a", ts(D1, 18), ts(D1, 19), False, ts(D1, 17, 59), ts(D1, 17, 59)),
        ("p2", "org-a", ts(D1, 20), ts(D1, 21), False, ts(D1, 19, 59), ts(D1, 19, 59)),
        ("p3", "org-b", ts(D1, 19), ts(D1, 20), True, ts(D1, 18, 59), ts(D1, 19, 30)),
        ("p4", "org-b", ts(D2, 23, 30), ts(D3, 0, 30), False, ts(D2, 23), ts(D2, 23)),
    ]
    vehicle_periods = [
        ("p1", "v1", "org-a", 3.0, 5, ts(D1, 18, 1), ts(D1, 18, 30), 0.5),
        ("p1", "v2", "org-a", 1.5, 2, ts(D1, 18, 5), ts(D1, 18, 6, 0.25), 0.0),
        ("p3", "v3", "org-b", 2.0, 3, ts(D1, 19, 1), ts(D1, 19, 20), 0.0),
        ("p4", "v3", "org-b", 4.25, 4, ts(D2, 23, 40), ts(D3, 0, 20), 0.0),
    ]
    breaks = [
        ("b1", "v1", "org-a", ts(D1, 18, 10), ts(D1, 18, 15), False, ts(D1, 18), ts(D1, 18)),
        ("b2", "v3", "org-b", ts(D1, 19, 5), ts(D1, 19, 6), True, ts(D1, 19), ts(D1, 19, 2)),
    ]
    events = [
        _event("e1", "v1", "org-a", "register", ts(D1, 18), None, None),
        _event("e2", "v1", "org-a", "update", ts(D1, 18, 1, 0.101), 52.45133, 13.46045),
        _event("e3", "v2", "org-a", "update", ts(D1, 18, 5), 52.5, 13.4),
        _event("e4", "v3", "org-b", "update", ts(D2, 23, 40), 48.1, 11.5),
        _event("e5", "v2", "org-a", "deregister", ts(D2, 1), None, None),
        _event("e6", "v3", "org-b", "update", ts(D2, 23, 50), 0.0, 0.0),
    ]
    return Curated(
        {
            "dim_organization": orgs,
            "dim_vehicle": vehicles,
            "dim_date": [_date_row(d) for d in (D1, D2, D3)],
            "fact_operating_period": periods,
            "fact_break": breaks,
            "fact_vehicle_operating_period": vehicle_periods,
            "fact_vehicle_event": events,
        }
    )


def event(eid: str, vehicle: str, org: str, kind: str, at: dt.datetime, lat=None, lng=None):
    return _event(eid, vehicle, org, kind, at, lat, lng)


def table_rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    """All rows of a warehouse table in key order (identifiers from this module only)."""
    query = f"select * from warehouse.{table} order by {KEYS[table]}"
    return conn.execute(query).fetchall()


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every warehouse table's rows plus the run ids in load_audit (tables a migration not
    applied yet would add are left out)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = "select to_regclass(%s) is not null"
        present = [t for t in KEYS if conn.execute(exists, [f"warehouse.{t}"]).fetchone()[0]]
        rows = {table: table_rows(conn, table) for table in present}
        audit = conn.execute("select run_id from warehouse.load_audit order by run_id")
        rows["load_audit"] = audit.fetchall()
    return rows


def sorted_rows(curated: Curated, table: str) -> list[tuple]:
    """The curated rows of a table in the warehouse's key order."""
    width = 2 if table == "fact_vehicle_operating_period" else 1
    return sorted(curated.rows.get(table, []), key=lambda row: row[:width])
