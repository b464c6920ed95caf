"""The table declarations (flows/tables.py) against every hand-written spelling of the tables:
the warehouse migrations on a real PostgreSQL, the Parquet the stage and the models write, and
the columns the expectation suites name. Each test fails when one side drifts from the other."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

from flows.lake import Lake, RunOutput
from flows.stage import stage_day
from flows.tables import CURATED, EVENTS, EXCHANGE, LOADED, QUARANTINE, Table
from flows.transform import empty_select, transform
from flows.warehouse import connect, migrate

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2019, 6, 1)
# Warehouse tables the loader keeps for itself, not curated tables.
BOOKKEEPING = {"load_audit", "schema_migrations"}

WAREHOUSE_TABLES = """
select c.relname::text
from pg_class as c
inner join pg_namespace as n on c.relnamespace = n.oid
where n.nspname = 'warehouse' and c.relkind in ('r', 'p') and not c.relispartition
"""
WAREHOUSE_COLUMNS = """
select table_name::text, column_name::text, data_type::text
from information_schema.columns
where table_schema = 'warehouse'
"""
PRIMARY_KEYS = """
select k.table_name::text, array_agg(k.column_name::text order by k.ordinal_position)
from information_schema.table_constraints as t
inner join information_schema.key_column_usage as k
    using (constraint_schema, constraint_name, table_name)
where t.table_schema = 'warehouse' and t.constraint_type = 'PRIMARY KEY'
group by k.table_name
"""


def warehouse_differences(url: str) -> list[str]:
    """How the migrated warehouse disagrees with the declarations: tables, columns and their
    types, primary keys; empty when they agree."""
    with psycopg.connect(url) as conn:
        tables = {name for (name,) in conn.execute(WAREHOUSE_TABLES).fetchall()} - BOOKKEEPING
        columns: dict[str, dict[str, str]] = {}
        for table, column, kind in conn.execute(WAREHOUSE_COLUMNS).fetchall():
            columns.setdefault(table, {})[column] = kind
        keys = dict(conn.execute(PRIMARY_KEYS).fetchall())
    found = []
    if tables != set(LOADED):
        found.append(f"tables: warehouse {sorted(tables)}, declared {sorted(LOADED)}")
    for name, table in LOADED.items():
        have, want = columns.get(name, {}), table.warehouse_types
        for column in sorted(have.keys() | want.keys()):
            if have.get(column) != want.get(column):
                found.append(
                    f"{name}.{column}: warehouse {have.get(column)}, declared {want.get(column)}"
                )
        if tuple(keys.get(name) or ()) != table.key:
            found.append(f"{name} primary key: warehouse {keys.get(name)}, declared {table.key}")
    return found


def test_the_migrations_create_the_declared_tables(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
    assert warehouse_differences(pg_url) == []


def test_a_migration_that_disagrees_with_the_declarations_is_named(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        conn.execute("alter table warehouse.fact_break add column note text")
        conn.execute("alter table warehouse.dim_vehicle alter column events type integer")
        conn.execute("alter table warehouse.fact_break drop constraint fact_break_pkey")
        conn.execute("create table warehouse.fact_extra (id text primary key)")
    assert warehouse_differences(pg_url) == [
        "tables: warehouse "
        + str(sorted([*LOADED, "fact_extra"]))
        + f", declared {sorted(LOADED)}",
        "dim_vehicle.events: warehouse integer, declared bigint",
        "fact_break.note: warehouse text, declared None",
        "fact_break primary key: warehouse None, declared ('break_id',)",
    ]


def _line(obj: dict) -> str:
    return json.dumps({"organization_id": "org-1", **obj}, separators=(",", ":"))


def _raw_day(lake: Lake) -> None:
    """One raw file with a period, a break, a vehicle's register and updates and a bad line:
    every curated table gets rows."""
    vehicle = {"id": "v1", "location": None}
    lines = [
        _line(
            {
                "event": "create",
                "on": "operating_period",
                "at": "2019-06-01T10:00:00Z",
                "data": {
                    "id": "op1",
                    "start": "2019-06-01T10:00:00Z",
                    "finish": "2019-06-01T11:00:00Z",
                },
            }
        ),
        _line(
            {
                "event": "create",
                "on": "break",
                "at": "2019-06-01T10:00:00Z",
                "data": {
                    "id": "br1",
                    "vehicle_id": "v1",
                    "start": "2019-06-01T10:20:00Z",
                    "finish": "2019-06-01T10:25:00Z",
                },
            }
        ),
        _line(
            {"event": "register", "on": "vehicle", "at": "2019-06-01T09:59:00Z", "data": vehicle}
        ),
        *(
            _line(
                {
                    "event": "update",
                    "on": "vehicle",
                    "at": f"2019-06-01T10:{m:02d}:00Z",
                    "data": {
                        "id": "v1",
                        "location": {
                            "lat": 52.0 + m / 100,
                            "lng": 13.4,
                            "at": f"2019-06-01T10:{m:02d}:00Z",
                        },
                    },
                }
            )
            for m in (10, 30, 50)
        ),
        "not json",
    ]
    raw = lake.raw_day(DAY)
    raw.mkdir(parents=True)
    (raw / "2019-06-01-10-00-0-events.json").write_text("\n".join(lines) + "\n")


def _parquet_types(files: list[Path]) -> list[tuple[str, str]]:
    listing = ", ".join(f"'{f}'" for f in files)
    query = f"describe select * from read_parquet([{listing}], hive_partitioning = false)"
    with duckdb.connect() as con:
        return [(row[0], row[1]) for row in con.sql(query).fetchall()]


def _declared_types(table: Table) -> list[tuple[str, str]]:
    """The declaration's columns and types, as DuckDB spells the types."""
    with duckdb.connect() as con:
        described = con.sql(f"describe {empty_select(table.schema)}").fetchall()
    return [(row[0], row[1]) for row in described]


def test_the_stage_and_the_models_write_the_declared_columns_and_types(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _raw_day(lake)
    stage_day(lake, DAY)
    out = tmp_path / "out"
    result = transform(lake, [DAY], out)
    assert all(result.rows[name] > 0 for name in CURATED), result.rows
    written = {
        EVENTS: sorted(lake.events_dir.rglob("*.parquet")),
        QUARANTINE: sorted(lake.quarantine_dir.rglob("*.parquet")),
    }
    for name, table in CURATED.items():
        written[table] = sorted(RunOutput(out).table(name).rglob("*.parquet"))
        if table.load != EXCHANGE:  # the rows the load stages
            changes = sorted(RunOutput(out).changes(name).rglob("*.parquet"))
            assert _parquet_types(changes) == _declared_types(table), f"changes of {name}"
    for table, files in written.items():
        assert files, table.name
        assert _parquet_types(files) == _declared_types(table), table.name
        frame = pl.read_parquet(files, hive_partitioning=False)
        assert frame.schema == table.polars_schema, table.name


@pytest.mark.parametrize(
    "path", sorted((ROOT / "expectations").glob("*.json")), ids=lambda p: p.stem
)
def test_expectation_suites_name_only_declared_columns(path: Path) -> None:
    suite = json.loads(path.read_text())
    tables = {EVENTS.name: EVENTS, **CURATED}
    table = tables[suite["meta"]["table"]]
    assert suite["name"] == table.name == path.stem
    derived = set(suite["meta"].get("derived_columns", {}))
    assert not derived & set(table.column_names), "a derived column shadows a declared one"
    known = set(table.column_names) | derived
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        named = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
        named += kwargs.get("column_list", []) + kwargs.get("column_set", [])
        unknown = set(named) - known
        assert not unknown, f"{expectation['type']} names undeclared columns {sorted(unknown)}"
