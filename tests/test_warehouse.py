"""Warehouse plumbing against a real PostgreSQL: forward-only migrations (once, recorded,
concurrent-safe, tamper-evident), the schema contract, roles, the embedded server and safe
error messages."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from flows.lake import Lake
from flows.settings import Settings
from flows.warehouse import (
    MIGRATIONS_DIR,
    WarehouseConnectionError,
    WarehouseError,
    connect,
    embedded_psql_hint,
    migrate,
    redact,
    start_embedded,
    stop_embedded,
    warehouse_url,
)

NAMES = [
    "001_create_warehouse.sql",
    "002_create_avg_distance_view.sql",
    "003_create_roles.sql",
    "004_partition_fact_vehicle_event.sql",
    "005_load_audit_source_days.sql",
    "006_add_breaks.sql",
]
VERSIONS = [int(name[:3]) for name in NAMES]


def recorded(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        query = "select version, name, checksum, applied_at from warehouse.schema_migrations"
        return conn.execute(query + " order by version").fetchall()


def test_migrations_apply_once_and_are_recorded(pg_url: str) -> None:
    with connect(pg_url) as conn:
        assert migrate(conn) == NAMES
        first = recorded(pg_url)
        assert migrate(conn) == []
    checksums = [hashlib.sha256((MIGRATIONS_DIR / n).read_bytes()).hexdigest() for n in NAMES]
    assert [(v, n, c) for v, n, c, _ in first] == list(zip(VERSIONS, NAMES, checksums, strict=True))
    assert recorded(pg_url) == first


def test_concurrent_migrate_applies_each_migration_once(pg_url: str) -> None:
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def worker(i: int) -> None:
        with connect(pg_url) as conn:
            barrier.wait()
            try:
                results[i] = migrate(conn)
            except Exception as exc:  # noqa: BLE001 - asserted below
                results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, list) for r in results), results
    assert sorted(results[0] + results[1]) == NAMES
    assert [row[1] for row in recorded(pg_url)] == NAMES


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    return directory


def test_a_changed_applied_migration_is_an_error(pg_url: str, migrations_copy: Path) -> None:
    with connect(pg_url) as conn:
        migrate(conn, migrations_copy)
        view = migrations_copy / NAMES[1]
        view.write_text(view.read_text().replace("count(*)", "count(distinct vehicle_id)"))
        with pytest.raises(WarehouseError, match=f"migration {NAMES[1]} changed after it was"):
            migrate(conn, migrations_copy)


def test_an_unknown_applied_migration_is_an_error(pg_url: str, migrations_copy: Path) -> None:
    with connect(pg_url) as conn:
        migrate(conn, migrations_copy)
        (migrations_copy / NAMES[2]).unlink()
        with pytest.raises(WarehouseError, match="003_create_roles.sql that this code does not"):
            migrate(conn, migrations_copy)


def test_a_failing_migration_rolls_back_alone(pg_url: str, migrations_copy: Path) -> None:
    (migrations_copy / "099_broken.sql").write_text(
        "create table warehouse.half_done (x int);\nselect 1 / 0;\n"
    )
    with connect(pg_url) as conn:
        with pytest.raises(WarehouseError, match="migration 099_broken.sql failed: division by"):
            migrate(conn, migrations_copy)
        missing = conn.execute("select to_regclass('warehouse.half_done')").fetchone()
        assert missing == (None,)
    assert [row[0] for row in recorded(pg_url)] == VERSIONS


def test_a_badly_named_migration_is_refused(pg_url: str, migrations_copy: Path) -> None:
    (migrations_copy / "4_oops.sql").write_text("select 1;")
    with connect(pg_url) as conn, pytest.raises(WarehouseError, match="4_oops.sql is not named"):
        migrate(conn, migrations_copy)


CONTRACT = {
    "fact_operating_period": [
        "operating_period_id",
        "organization_id",
        "start_at",
        "finish_at",
        "is_deleted",
        "created_at",
        "updated_at",
    ],
    "fact_break": [
        "break_id",
        "vehicle_id",
        "organization_id",
        "start_at",
        "finish_at",
        "is_deleted",
        "created_at",
        "updated_at",
    ],
    "fact_vehicle_operating_period": [
        "operating_period_id",
        "vehicle_id",
        "organization_id",
        "distance_km",
        "location_points",
        "first_location_at",
        "last_location_at",
        "break_distance_km",
    ],
    "avg_distance_per_operating_period": [
        "operating_period_id",
        "organization_id",
        "start_at",
        "finish_at",
        "vehicles",
        "avg_distance_km",
        "total_distance_km",
    ],
    "load_audit": [
        "id",
        "run_id",
        "flow_run_id",
        "partition_date",
        "rows",
        "started_at",
        "finished_at",
        "loaded_by",
        "source_days",
    ],
}


def test_schema_matches_the_contract(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        query = (
            "select table_name, column_name, data_type from information_schema.columns"
            " where table_schema = 'warehouse' order by table_name, ordinal_position"
        )
        columns = conn.execute(query).fetchall()
    by_table: dict[str, list[str]] = {}
    for table, column, _ in columns:
        by_table.setdefault(table, []).append(column)
    for table, expected in CONTRACT.items():
        assert by_table[table] == expected, table
    timestamp_types = {t for _, c, t in columns if c.endswith("_at") or c == "at"}
    assert timestamp_types == {"timestamp with time zone"}


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("update warehouse.fact_vehicle_operating_period set distance_km = -1", "CheckViolation"),
        (
            "update warehouse.fact_vehicle_operating_period set break_distance_km = -1",
            "CheckViolation",
        ),
        (
            "update warehouse.fact_vehicle_operating_period set location_points = 0",
            "CheckViolation",
        ),
        ("update warehouse.fact_vehicle_event set event_date = '2019-06-02'", "CheckViolation"),
        ("update warehouse.fact_vehicle_event set vehicle_id = 'ghost'", "ForeignKeyViolation"),
    ],
    ids=[
        "negative distance",
        "negative break distance",
        "no points",
        "event date not UTC date of at",
        "unknown vehicle",
    ],
)
def test_contract_checks_reject_bad_rows(pg_url: str, statement: str, error: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        conn.execute(
            "insert into warehouse.dim_organization values ('o', null, null, 1);"
            "insert into warehouse.dim_vehicle (vehicle_id) values ('v');"
            "insert into warehouse.dim_date values ('2019-06-01', 2019, 2, 6, 1, 6, true),"
            " ('2019-06-02', 2019, 2, 6, 2, 7, true);"
            "insert into warehouse.fact_operating_period (operating_period_id, is_deleted)"
            " values ('p', false);"
            "insert into warehouse.fact_vehicle_operating_period values"
            " ('p', 'v', 'o', 1.5, 2, '2019-06-01T10:00Z', '2019-06-01T10:05Z');"
            "insert into warehouse.fact_vehicle_event values ('e', 'v', 'o', 'update',"
            " '2019-06-01T23:30Z', 1, 2, '2019-06-01T23:30Z', true, '2019-06-01')"
        )
        with pytest.raises(getattr(psycopg.errors, error)):
            conn.execute(statement)


def test_analyst_role_reads_but_cannot_write(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        conn.execute("insert into warehouse.dim_organization values ('o', null, null, 3)")
        conn.execute("set role vdp_analyst")
        assert conn.execute("select vehicles from warehouse.dim_organization").fetchall() == [(3,)]
        assert (
            conn.execute("select * from warehouse.avg_distance_per_operating_period").rowcount == 0
        )
        denied = [
            "insert into warehouse.dim_organization values ('x', null, null, 1)",
            "update warehouse.dim_organization set vehicles = 4",
            "delete from warehouse.dim_organization",
            "create table warehouse.mine (x int)",
        ]
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(statement)
        conn.execute("reset role")
        assert conn.execute("select vehicles from warehouse.dim_organization").fetchall() == [(3,)]


def test_tables_added_later_are_readable_by_analysts(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        conn.execute("create table warehouse.later (x int); insert into warehouse.later values (7)")
        conn.execute("set role vdp_analyst")
        assert conn.execute("select x from warehouse.later").fetchall() == [(7,)]


def test_embedded_server_starts_under_the_lake_and_migrates(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    url = warehouse_url(Settings(warehouse_url=None, lake_root=lake.root), lake)
    try:
        with connect(url) as conn:
            assert conn.execute("show data_directory").fetchone() == (str(lake.warehouse_dir),)
            assert migrate(conn) == NAMES
        assert embedded_psql_hint(lake) == f'psql "{url}"'
        assert warehouse_url(Settings(warehouse_url=None, lake_root=lake.root), lake) == url
    finally:
        assert stop_embedded(lake) is True
    assert "is not running" in embedded_psql_hint(lake)
    with pytest.raises(WarehouseConnectionError):
        connect(url, timeout=2)

    restarted = warehouse_url(Settings(warehouse_url=None, lake_root=lake.root), lake)
    try:
        with connect(restarted) as conn:
            assert migrate(conn) == []
    finally:
        assert stop_embedded(lake) is True


def test_embedded_server_slower_than_pg_ctl_waits_is_attached_to(
    tmp_path: Path, monkeypatch
) -> None:
    """pgserver gives pg_ctl 10 s to start the server; on a busy machine the server comes up
    after pg_ctl gave up. Here the first start really starts it and then reports pg_ctl's
    timeout: start_embedded attaches to the server instead of failing the run."""
    import subprocess

    import pgserver

    real, calls = pgserver.get_server, []

    def slow_pg_ctl(*args, **kwargs):
        calls.append(args)
        server = real(*args, **kwargs)
        if len(calls) == 1:
            raise subprocess.TimeoutExpired(["pg_ctl", "start"], 10)
        return server

    monkeypatch.setattr(pgserver, "get_server", slow_pg_ctl)
    lake = Lake(tmp_path / "lake")
    try:
        url = start_embedded(lake)
        with connect(url) as conn:
            assert conn.execute("show data_directory").fetchone() == (str(lake.warehouse_dir),)
    finally:
        assert stop_embedded(lake) is True
    assert len(calls) == 2


def test_a_configured_url_is_used_as_given(tmp_path: Path) -> None:
    given = "postgresql://vdp:pw@db.example:5432/vdp"
    settings = Settings(warehouse_url=given, lake_root=tmp_path)
    assert warehouse_url(settings, Lake(tmp_path)) == given
    assert not (tmp_path / "warehouse").exists()


def test_connection_error_never_shows_the_password() -> None:
    url = "postgresql://vdp:Sup3r-s3cret@127.0.0.1:1/vdp?sslmode=disable"
    with pytest.raises(WarehouseConnectionError) as caught:
        connect(url, timeout=2)
    message = str(caught.value)
    assert "Sup3r-s3cret" not in message
    assert message.startswith(
        "cannot connect to the warehouse at postgresql://vdp:***@127.0.0.1:1/"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("host=h user=u password='a b c' dbname=d", "host=h user=u password=*** dbname=d"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:***@/postgres?host=/tmp/x",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
    ids=["password in userinfo", "password in query", "key=value DSN", "pgserver URI", "none"],
)
def test_redact_hides_passwords(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_a_malformed_dsn_is_not_a_retryable_connection_error() -> None:
    with pytest.raises(WarehouseError, match="cannot connect to the warehouse at") as caught:
        connect("host=h password=hunter2 nonsense")
    assert not isinstance(caught.value, WarehouseConnectionError)
    assert "hunter2" not in str(caught.value)
