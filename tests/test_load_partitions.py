"""fact_vehicle_event as day partitions (migration 004) on a real PostgreSQL: the migration
keeps existing rows, a load replaces a date's partition exactly by exchange, a failed exchange
leaves every table and partition as before, foreign keys are checked in bulk, and the roles
keep their limits (the loader swaps only through the functions, the analyst only reads)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from flows.load import load_run
from flows.warehouse import MIGRATIONS_DIR, WarehouseError, connect, migrate
from tests.support_warehouse import D1, D2, base_curated, event, snapshot, sorted_rows, ts

PERIODS = ["p1", "p2", "p3", "p4"]
PARTITIONS = """
select child.relname::text, child.oid::int, pg_get_expr(child.relpartbound, child.oid)
from pg_inherits
join pg_class as child on child.oid = pg_inherits.inhrelid
where pg_inherits.inhparent = 'warehouse.fact_vehicle_event'::regclass
order by 1
"""
EVENT_TABLES = "select relname::text from pg_class where relname like 'fact_vehicle_event%' \
and relkind in ('r', 'p') order by 1"


@pytest.fixture
def url(pg_url: str) -> str:
    with connect(pg_url) as conn:
        migrate(conn)
    return pg_url


def load(url: str, curated_dir: Path, run_id: str, event_dates=(D1, D2)) -> None:
    load_run(
        url,
        curated_dir,
        run_id=run_id,
        partition_date=D1,
        period_ids=PERIODS,
        event_dates=list(event_dates),
    )


def query(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement).fetchall()


def day_partitions(url: str) -> dict[str, tuple[str, int]]:
    """Bound -> (name, oid) of every partition of fact_vehicle_event."""
    return {bound: (name, oid) for name, oid, bound in query(url, PARTITIONS)}


def test_migration_moves_existing_rows_into_day_partitions(pg_url: str, tmp_path: Path) -> None:
    before_004 = tmp_path / "migrations"
    before_004.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("00[123]_*.sql")):
        shutil.copy(path, before_004 / path.name)
    with connect(pg_url) as conn:
        migrate(conn, before_004)
    base = base_curated()
    with connect(pg_url) as conn, conn.cursor() as cursor:  # the loader of before 004
        for table in ("dim_vehicle", "dim_date", "fact_vehicle_event"):
            marks = ", ".join(["%s"] * len(base.rows[table][0]))
            insert = f"insert into warehouse.{table} values ({marks})"
            cursor.executemany(insert, base.rows[table])
    rows_before = snapshot(pg_url)
    assert len(rows_before["fact_vehicle_event"]) == 6

    shutil.copy(MIGRATIONS_DIR / "004_partition_fact_vehicle_event.sql", before_004)
    with connect(pg_url) as conn:
        assert migrate(conn, before_004) == ["004_partition_fact_vehicle_event.sql"]
    assert snapshot(pg_url) == rows_before
    assert {bound: name for bound, (name, _) in day_partitions(pg_url).items()} == {
        "DEFAULT": "fact_vehicle_event_default",
        "FOR VALUES FROM ('2019-06-01') TO ('2019-06-02')": "fact_vehicle_event_20190601_m004",
        "FOR VALUES FROM ('2019-06-02') TO ('2019-06-03')": "fact_vehicle_event_20190602_m004",
    }
    assert query(pg_url, EVENT_TABLES) == [
        ("fact_vehicle_event",),
        ("fact_vehicle_event_20190601_m004",),
        ("fact_vehicle_event_20190602_m004",),
        ("fact_vehicle_event_default",),
    ]
    constraints = query(
        pg_url,
        "select conname::text, pg_get_constraintdef(oid) from pg_constraint"
        " where conrelid = 'warehouse.fact_vehicle_event'::regclass order by 1",
    )
    assert dict(constraints) == {
        "fact_vehicle_event_check": "CHECK ((event_date = ((at AT TIME ZONE 'UTC'::text))::date))",
        "fact_vehicle_event_event_check": "CHECK ((event = ANY (ARRAY['register'::text, "
        "'update'::text, 'deregister'::text])))",
        "fact_vehicle_event_event_date_fkey": "FOREIGN KEY (event_date) "
        "REFERENCES warehouse.dim_date(date_key)",
        "fact_vehicle_event_pkey": "PRIMARY KEY (event_id, event_date)",
        "fact_vehicle_event_vehicle_id_fkey": "FOREIGN KEY (vehicle_id) "
        "REFERENCES warehouse.dim_vehicle(vehicle_id)",
    }
    indexes = query(
        pg_url,
        "select indexname::text from pg_indexes where schemaname = 'warehouse'"
        " and tablename = 'fact_vehicle_event' order by 1",
    )
    assert indexes == [
        ("fact_vehicle_event_event_date_idx",),
        ("fact_vehicle_event_pkey",),
        ("fact_vehicle_event_vehicle_location_idx",),
    ]


def test_reloading_a_date_replaces_its_partition_exactly(url: str, tmp_path: Path) -> None:
    base = base_curated()
    load(url, base.write(tmp_path / "c1"), "run-1")
    first = day_partitions(url)
    day1 = [
        event("e7", "v1", "org-a", "update", ts(D1, 20), 52.0, 13.0),
        event("e8", "v3", "org-b", "register", ts(D1, 21)),
    ]
    second = base.with_rows("fact_vehicle_event", day1)
    load(url, second.write(tmp_path / "c2"), "run-2", event_dates=[D1])

    day2 = [r for r in base.rows["fact_vehicle_event"] if r[-1] == D2]
    assert snapshot(url)["fact_vehicle_event"] == sorted(day1 + day2)
    after = day_partitions(url)
    d1_bound = "FOR VALUES FROM ('2019-06-01') TO ('2019-06-02')"
    d2_bound = "FOR VALUES FROM ('2019-06-02') TO ('2019-06-03')"
    assert set(after) == set(first) == {"DEFAULT", d1_bound, d2_bound}
    assert after[d2_bound] == first[d2_bound]  # D2 was not in this load: untouched
    assert after[d1_bound] != first[d1_bound]  # D1 is a new table ...
    assert after[d1_bound][0].startswith("fact_vehicle_event_20190601_")
    names = [name for (name,) in query(url, EVENT_TABLES)]
    assert first[d1_bound][0] not in names  # ... and the old one is dropped, not left behind
    assert len(names) == 4
    partition = f"warehouse.{after[d1_bound][0]}"
    assert query(url, f"select event_id from {partition} order by 1") == [("e7",), ("e8",)]


def test_a_failed_exchange_leaves_every_table_and_partition_as_before(
    url: str, tmp_path: Path
) -> None:
    base = base_curated()
    load(url, base.write(tmp_path / "c1"), "run-1")
    before, partitions = snapshot(url), day_partitions(url)
    tables = query(url, EVENT_TABLES)
    orphan = [event("e9", "ghost", "org-a", "update", ts(D1, 3), 52.0, 13.0)]
    bad = base.with_rows("fact_vehicle_event", orphan).write(tmp_path / "bad")

    with pytest.raises(WarehouseError, match="rolled back: .*fact_vehicle_event_vehicle_id_fkey"):
        load(url, bad, "run-bad", event_dates=[D1])
    assert snapshot(url) == before
    assert day_partitions(url) == partitions
    assert query(url, EVENT_TABLES) == tables


def test_exchange_checks_foreign_keys_in_bulk_not_per_row(url: str) -> None:
    """Per-row RI triggers scan dim_vehicle once per inserted row; the exchange checks the
    whole day with one query per FK (pg_stat_xact counts the scans of this transaction)."""
    scans = (
        "select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) from pg_stat_xact_user_tables"
        " where relid = 'warehouse.dim_vehicle'::regclass"
    )
    notices: list[str] = []
    with connect(url) as conn, conn.transaction():
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(
            "insert into warehouse.dim_vehicle (vehicle_id) select 'v' || i"
            " from generate_series(1, 50) i;"
            "insert into warehouse.dim_date values ('2019-06-01', 2019, 2, 6, 1, 6, true),"
            " ('2019-06-02', 2019, 2, 6, 2, 7, true)"
        )
        table = conn.execute(
            "select warehouse.create_fact_vehicle_event_partition('2019-06-01', 'bulk')"
        ).fetchone()[0]
        conn.execute(
            f"insert into warehouse.{table} select 'e' || i, 'v' || (i % 50 + 1), 'o', 'update',"
            " '2019-06-01T12:00Z', 1, 2, null, true, '2019-06-01' from generate_series(1, 2000) i"
        )
        start = conn.execute(scans).fetchone()[0]
        conn.execute("set local client_min_messages = debug1")
        conn.execute(
            "select warehouse.exchange_fact_vehicle_event_partition('2019-06-01', %s)", [table]
        )
        conn.execute("reset client_min_messages")
        bulk = conn.execute(scans).fetchone()[0] - start
        conn.execute(
            "insert into warehouse.fact_vehicle_event select 'f' || i, 'v' || (i % 50 + 1), 'o',"
            " 'update', '2019-06-02T12:00Z', 1, 2, null, true, '2019-06-02'"
            " from generate_series(1, 2000) i"
        )
        per_row = conn.execute(scans).fetchone()[0] - start - bulk
        attached = conn.execute(
            f"select count(*) from warehouse.fact_vehicle_event where event_date = '2019-06-01'"
            f" and tableoid = 'warehouse.{table}'::regclass"
        ).fetchone()[0]
        conn.execute("rollback")  # leave nothing behind (the transaction block ends here)
    assert attached == 2000
    assert bulk <= 2 and per_row >= 2000, (bulk, per_row)
    assert any(f'partition constraint for table "{table}" is implied' in n for n in notices)


def test_the_loader_swaps_partitions_only_through_the_functions(url: str, tmp_path: Path) -> None:
    as_loader = conninfo.make_conninfo(url, options="-c role=vdp_loader")
    load(as_loader, base_curated().write(tmp_path / "c"), "run-loader")
    partitions = day_partitions(url)
    d1 = partitions["FOR VALUES FROM ('2019-06-01') TO ('2019-06-02')"][0]
    owners = query(
        url, f"select pg_get_userbyid(relowner)::text from pg_class where relname = '{d1}'"
    )
    assert owners == [("postgres",)]
    assert query(url, f"select has_table_privilege('vdp_loader', 'warehouse.{d1}', 'insert')") == [
        (False,)
    ]
    denied = [
        f"drop table warehouse.{d1}",
        f"alter table warehouse.fact_vehicle_event detach partition warehouse.{d1}",
        "create table warehouse.fact_vehicle_event_20190601_mine (like warehouse.dim_date)",
    ]
    with connect(as_loader) as conn:
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.RaiseException, match="is not a table made by"):
            conn.execute(
                "select warehouse.exchange_fact_vehicle_event_partition('2019-06-01', 'dim_date')"
            )
        with pytest.raises(psycopg.errors.RaiseException, match="partition tag must be"):
            conn.execute("select warehouse.create_fact_vehicle_event_partition('2019-06-01', 'X;')")
    assert day_partitions(url) == partitions


def test_the_analyst_reads_new_partitions_and_cannot_write(url: str, tmp_path: Path) -> None:
    curated = base_curated()
    load(url, curated.write(tmp_path / "c"), "run-1")
    d1 = day_partitions(url)["FOR VALUES FROM ('2019-06-01') TO ('2019-06-02')"][0]
    before = snapshot(url)
    with connect(url) as conn:
        conn.execute("set role vdp_analyst")
        rows = conn.execute("select * from warehouse.fact_vehicle_event order by event_id")
        assert rows.fetchall() == sorted_rows(curated, "fact_vehicle_event")
        assert conn.execute(f"select count(*) from warehouse.{d1}").fetchone() == (3,)
        writes = [
            "insert into warehouse.fact_vehicle_event select * from warehouse.fact_vehicle_event",
            "delete from warehouse.fact_vehicle_event",
            f"delete from warehouse.{d1}",
            f"drop table warehouse.{d1}",
            "select warehouse.create_fact_vehicle_event_partition('2019-06-03', 'a')",
            f"select warehouse.exchange_fact_vehicle_event_partition('2019-06-01', '{d1}')",
        ]
        for statement in writes:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert snapshot(url) == before
