"""Loading curated Parquet into a real PostgreSQL: exact rows, idempotency, replacement of a
run's scope, all-or-nothing failures, concurrent loads, the BI view and the loader role."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from prefect.logging import disable_run_logger
from prefect.states import Completed, Failed
from psycopg import conninfo

from flows.load import (
    LOAD_LOCK_KEY,
    LoadSummary,
    _is_connection_failure,
    fetch_answer,
    is_load_committed,
    load_run,
    load_warehouse,
)
from flows.warehouse import WarehouseConnectionError, WarehouseError, connect, migrate
from tests.support_warehouse import (
    D1,
    D2,
    D3,
    KEYS,
    Curated,
    base_curated,
    event,
    snapshot,
    sorted_rows,
    ts,
)

ALL_PERIODS = ["p1", "p2", "p3", "p4"]


@pytest.fixture
def url(pg_url: str) -> str:
    """A migrated warehouse database of its own."""
    with connect(pg_url) as conn:
        migrate(conn)
    return pg_url


def load(url: str, curated_dir: Path, run_id: str, **scope) -> LoadSummary:
    scope.setdefault("period_ids", ALL_PERIODS)
    scope.setdefault("event_dates", [D1, D2])
    return load_run(url, curated_dir, run_id=run_id, partition_date=D1, **scope)


def test_load_gives_exactly_the_curated_rows(url: str, tmp_path: Path) -> None:
    curated = base_curated()
    summary = load(url, curated.write(tmp_path / "c"), "run-1", flow_run_id="fr-1")

    state = snapshot(url)
    for table in KEYS:
        assert state[table] == sorted_rows(curated, table), table
    expected_rows = {table: len(curated.rows[table]) for table in KEYS}
    assert summary.rows == expected_rows
    assert summary.already_loaded is False
    with psycopg.connect(url) as conn:
        audit = conn.execute(
            "select run_id, flow_run_id, partition_date, rows, finished_at >= started_at,"
            " loaded_by from warehouse.load_audit"
        ).fetchall()
    assert audit == [("run-1", "fr-1", D1, expected_rows, True, "postgres")]
    assert is_load_committed(url, "run-1") is True
    assert is_load_committed(url, "run-2") is False


def test_reloading_is_idempotent(url: str, tmp_path: Path) -> None:
    curated_dir = base_curated().write(tmp_path / "c")
    load(url, curated_dir, "run-1")
    before = snapshot(url)

    again = load(url, curated_dir, "run-1")
    assert again.already_loaded is True
    assert again.rows["fact_vehicle_event"] == 6
    assert snapshot(url) == before

    load(url, curated_dir, "run-1-retry")
    after = snapshot(url)
    assert after["load_audit"] == [("run-1",), ("run-1-retry",)]
    assert {t: after[t] for t in KEYS} == {t: before[t] for t in KEYS}


def test_second_run_replaces_its_scope_and_removes_stale_rows(url: str, tmp_path: Path) -> None:
    base = base_curated()
    load(url, base.write(tmp_path / "c1"), "run-1")
    p1_only_v2 = [("p1", "v2", "org-a", 2.5, 3, ts(D1, 18, 5), ts(D1, 18, 40), 0.0)]
    day2 = [event("e7", "v3", "org-b", "update", ts(D2, 23, 45), 48.2, 11.6)]
    second = base.with_rows("fact_vehicle_operating_period", p1_only_v2).with_rows(
        "fact_vehicle_event", day2
    )
    summary = load(url, second.write(tmp_path / "c2"), "run-2", period_ids=["p1"], event_dates=[D2])

    state = snapshot(url)
    p4_and_p3 = [r for r in base.rows["fact_vehicle_operating_period"] if r[0] in ("p3", "p4")]
    assert state["fact_vehicle_operating_period"] == sorted(p1_only_v2 + p4_and_p3)
    day1 = [r for r in base.rows["fact_vehicle_event"] if r[-1] == D1]
    assert state["fact_vehicle_event"] == sorted(day1 + day2)
    assert summary.rows["fact_vehicle_operating_period"] == 1
    assert summary.rows["fact_vehicle_event"] == 1


BAD_ROWS = {
    "negative distance": (
        "fact_vehicle_operating_period",
        [("p1", "v1", "org-a", -0.5, 2, ts(D1, 18), ts(D1, 18, 1), 0.0)],
        "fact_vehicle_operating_period_distance_km_check",
    ),
    "vehicle missing from dim_vehicle": (
        "fact_vehicle_event",
        [event("e9", "ghost", "org-a", "update", ts(D2, 3), 52.0, 13.0)],
        "fact_vehicle_event_vehicle_id_fkey",
    ),
    "duplicate event id": (
        "fact_vehicle_event",
        [
            # event_id hashes `at`, so a real duplicate is on one date (the key of the day
            # partitions is (event_id, event_date)).
            event("e9", "v1", "org-a", "update", ts(D1, 3), 52.0, 13.0),
            event("e9", "v1", "org-a", "update", ts(D1, 4), 52.0, 13.0),
        ],
        "fact_vehicle_event_pkey",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS), ids=list(BAD_ROWS))
def test_failed_load_changes_nothing(url: str, tmp_path: Path, case: str) -> None:
    table, rows, constraint = BAD_ROWS[case]
    empty = snapshot(url)
    bad = base_curated().with_rows(table, rows).write(tmp_path / "bad")

    with pytest.raises(WarehouseError, match=f"failed and was rolled back: .*{constraint}"):
        load(url, bad, "run-bad")
    assert snapshot(url) == empty
    assert all(rows == [] for rows in empty.values())

    load(url, base_curated().write(tmp_path / "good"), "run-good")
    before = snapshot(url)
    with pytest.raises(WarehouseError):
        load(url, bad, "run-bad-2")
    assert snapshot(url) == before
    assert is_load_committed(url, "run-bad-2") is False


def _load_both_at_once(url: str, runs: list[tuple[Path, str, dict]]) -> list[object]:
    barrier = threading.Barrier(len(runs))
    results: list[object] = [None] * len(runs)

    def worker(i: int, curated_dir: Path, run_id: str, scope: dict) -> None:
        barrier.wait()
        try:
            results[i] = load(url, curated_dir, run_id, **scope)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i, *run)) for i, run in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_loads_equal_a_sequential_load(url: str, tmp_path: Path) -> None:
    # The same rows in opposite orders: without the load lock the two merges could take row
    # locks in opposite orders and deadlock (the lock itself is tested just below).
    base = base_curated()
    reversed_rows = Curated({table: rows[::-1] for table, rows in base.rows.items()})
    runs = [
        (base.write(tmp_path / "a"), "run-a", {}),
        (reversed_rows.write(tmp_path / "b"), "run-b", {"period_ids": ALL_PERIODS[::-1]}),
    ]
    results = _load_both_at_once(url, runs)
    assert all(isinstance(r, LoadSummary) for r in results), results
    concurrent = snapshot(url)

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate warehouse.load_audit, " + ", ".join(f"warehouse.{t}" for t in KEYS))
    for curated, run_id, scope in runs:
        load(url, curated, run_id, **scope)
    assert concurrent == snapshot(url)
    assert concurrent["fact_vehicle_event"] == sorted_rows(base, "fact_vehicle_event")


def _waiting_for_load_lock(url: str) -> int | None:
    """The pid of a backend that PostgreSQL shows blocked on the load lock: its lock request
    not granted in pg_locks, and pg_stat_activity waiting on an advisory lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select a.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid"
            " where l.locktype = 'advisory' and not l.granted"
            " and (l.classid::bigint << 32 | l.objid::bigint) = %s"
            " and a.wait_event_type = 'Lock' and a.wait_event = 'advisory'"
            " and a.datname = current_database()",
            [LOAD_LOCK_KEY],
        ).fetchone()
    return row[0] if row else None


def test_a_load_waits_for_the_load_lock(url: str, tmp_path: Path) -> None:
    """The load blocks on the advisory lock (seen from PostgreSQL's side, not guessed from a
    sleep), commits nothing while it waits, and goes through once the lock is released."""
    curated_dir = base_curated().write(tmp_path / "c")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", [LOAD_LOCK_KEY])
        worker = threading.Thread(target=load, args=(url, curated_dir, "run-waiting"))
        worker.start()
        deadline = time.monotonic() + 60
        while (waiter := _waiting_for_load_lock(url)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiter is not None, "the load never blocked on the load lock"
        assert worker.is_alive()
        assert is_load_committed(url, "run-waiting") is False
        holder.execute("select pg_advisory_unlock(%s)", [LOAD_LOCK_KEY])
    worker.join(30)
    assert not worker.is_alive()
    assert is_load_committed(url, "run-waiting") is True
    assert _waiting_for_load_lock(url) is None


def test_view_answers_the_bi_question(url: str, tmp_path: Path) -> None:
    load(url, base_curated().write(tmp_path / "c"), "run-1")
    rows = fetch_answer(url)
    answer = {
        r["operating_period_id"]: (r["vehicles"], r["avg_distance_km"], r["total_distance_km"])
        for r in rows
    }
    # p3 is deleted; p2 is live but no vehicle had a point in it.
    assert answer == {"p1": (2, 2.25, 4.5), "p2": (0, None, 0.0), "p4": (1, 4.25, 4.25)}
    assert [r["operating_period_id"] for r in rows] == ["p1", "p2", "p4"]
    assert rows[0]["start_at"] == ts(D1, 18) and rows[0]["organization_id"] == "org-a"
    assert [r["operating_period_id"] for r in fetch_answer(url, D1)] == ["p1", "p2"]
    assert [r["operating_period_id"] for r in fetch_answer(url, D2)] == ["p4"]
    assert [r["operating_period_id"] for r in fetch_answer(url, D3)] == ["p4"]


def test_loader_role_can_load_but_not_change_the_schema(url: str, tmp_path: Path) -> None:
    as_loader = conninfo.make_conninfo(url, options="-c role=vdp_loader")
    with connect(as_loader) as conn:
        assert migrate(conn) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("create table warehouse.scratch (x int)")
    summary = load(as_loader, base_curated().write(tmp_path / "c"), "run-loader")
    assert summary.rows["fact_vehicle_event"] == 6
    assert is_load_committed(url, "run-loader") is True


def test_load_needs_a_migrated_warehouse(pg_url: str, tmp_path: Path) -> None:
    curated_dir = base_curated().write(tmp_path / "c")
    with pytest.raises(WarehouseError, match="no schema yet; run the migrations first"):
        load(pg_url, curated_dir, "run-1")
    assert is_load_committed(pg_url, "run-1") is False


def test_missing_curated_table_is_a_clear_error(url: str, tmp_path: Path) -> None:
    curated_dir = base_curated().write(tmp_path / "c")
    (curated_dir / "_changes" / "dim_date" / "part-0.parquet").unlink()
    with pytest.raises(WarehouseError, match="curated table dim_date has no Parquet files"):
        load(url, curated_dir, "run-1")


def test_missing_event_partition_empties_that_date(url: str, tmp_path: Path) -> None:
    base = base_curated()
    load(url, base.write(tmp_path / "c1"), "run-1")
    day1_only = base.with_rows(
        "fact_vehicle_event", [r for r in base.rows["fact_vehicle_event"] if r[-1] == D1]
    )
    load(url, day1_only.write(tmp_path / "c2"), "run-2", event_dates=[D1, D2])
    assert snapshot(url)["fact_vehicle_event"] == sorted_rows(day1_only, "fact_vehicle_event")


def test_prefect_task_migrates_and_loads(pg_url: str, tmp_path: Path) -> None:
    curated_dir = base_curated().write(tmp_path / "c")
    with disable_run_logger():
        result = load_warehouse.fn(
            pg_url,
            curated_dir,
            run_id="run-task",
            partition_date=D1,
            period_ids=ALL_PERIODS,
            event_dates=[D1, D2],
            flow_run_id="fr-9",
        )
    assert result["rows"]["fact_operating_period"] == 4
    assert is_load_committed(pg_url, "run-task") is True


@pytest.mark.parametrize(
    ("state", "retried"),
    [
        (Failed(data=WarehouseConnectionError("cannot connect to the warehouse at x")), True),
        (Failed(data=WarehouseError("load of run r failed and was rolled back: check")), False),
        (Failed(data=ValueError("bad input")), False),
        (Completed(data=1), False),
    ],
    ids=["connection refused retries", "data error fails", "bug fails", "success"],
)
def test_retry_only_on_connection_failures(state, retried: bool) -> None:
    assert _is_connection_failure(load_warehouse, None, state) is retried
