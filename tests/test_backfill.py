"""Backfills that scale out: a backfill on a real local Dask cluster (2 worker processes) leaves
the same warehouse as loading the days one at a time; per-day concurrency slots keep two runs
of the same day apart."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from prefect import flow, task
from psycopg import conninfo, sql

from flows.scale import LOCAL_CLUSTER, DayBusy, day_slots, with_dask

START = dt.date(2019, 6, 1)
DAYS = 3
END = START + dt.timedelta(days=DAYS - 1)

# Every warehouse table the contract names, read in a stable order with its business columns
# (load-time columns such as loaded_at differ between any two loads by design).
SNAPSHOT_QUERIES = {
    "avg_distance": "select operating_period_id, organization_id, start_at, finish_at, vehicles,"
    " round(avg_distance_km::numeric, 9), round(total_distance_km::numeric, 9)"
    " from warehouse.avg_distance_per_operating_period order by 1",
    "fact_operating_period": "select operating_period_id, organization_id, start_at, finish_at,"
    " is_deleted from warehouse.fact_operating_period order by 1",
    "fact_vehicle_operating_period": "select operating_period_id, vehicle_id, organization_id,"
    " round(distance_km::numeric, 9), location_points, first_location_at, last_location_at"
    " from warehouse.fact_vehicle_operating_period order by 1, 2",
    "fact_vehicle_event": "select count(*), count(distinct event_id),"
    " md5(string_agg(event_id, ',' order by event_id)) from warehouse.fact_vehicle_event",
    "dim_vehicle": "select vehicle_id, organization_id from warehouse.dim_vehicle order by 1",
    "dim_organization": "select organization_id from warehouse.dim_organization order by 1",
}


@pytest.fixture
def second_pg_url(pg_server_url: str) -> Iterator[str]:
    """Another fresh database on the same server, so two loads can be compared side by side."""
    name = f"vdp_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    info = conninfo.conninfo_to_dict(pg_server_url)
    yield conninfo.make_conninfo(**{**info, "dbname": name})
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def _snapshot(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(q).fetchall() for name, q in SNAPSHOT_QUERIES.items()}


@pytest.fixture
def source_days(
    s3_bucket: str, s3_client, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """Three generated source days in a moto bucket (settings point the pipeline at it);
    returns the generator's expected.json."""
    from flows.tools.generate import generate

    generate(
        f"s3://{s3_bucket}/",
        START,
        DAYS,
        orgs=2,
        vehicles=8,
        seed=11,
        quirk_rate=0.02,
        s3_endpoint_url=moto_endpoint,
    )
    monkeypatch.setenv("VDP_SOURCE_URL", f"s3://{s3_bucket}/data/")
    monkeypatch.setenv("VDP_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("VDP_S3_ANONYMOUS", "true")
    body = s3_client.get_object(Bucket=s3_bucket, Key="expected.json")["Body"].read()
    return json.loads(body)


def _use(monkeypatch: pytest.MonkeyPatch, lake, url: str) -> None:
    monkeypatch.setenv("VDP_LAKE_ROOT", str(lake))
    monkeypatch.setenv("VDP_WAREHOUSE_URL", url)


def test_dask_backfill_equals_sequential_daily_runs(
    prefect_backend,
    source_days: str,
    pg_url: str,
    second_pg_url: str,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.pipeline import backfill, daily_pipeline

    _use(monkeypatch, tmp_path / "lake-sequential", pg_url)
    for offset in range(DAYS):
        daily_pipeline(date=START + dt.timedelta(days=offset))
    sequential = _snapshot(pg_url)

    _use(monkeypatch, tmp_path / "lake-dask", second_pg_url)
    result = with_dask(backfill, None)(start=START, end=END)
    on_dask = _snapshot(second_pg_url)

    assert result["days"] == [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    live = sorted(p["operating_period_id"] for p in source_days["periods"] if not p["is_deleted"])
    assert [row[0] for row in sequential["avg_distance"]] == live and live
    assert sequential["fact_vehicle_event"][0][0] > 0
    for table, rows in sequential.items():
        assert on_dask[table] == rows, f"{table} differs between Dask backfill and daily runs"


@task
def _worker_pid(_: int) -> int:
    return os.getpid()


@flow
def _where_tasks_run() -> list[int]:
    return [f.result() for f in _worker_pid.map(range(4))]


def test_local_dask_cluster_runs_tasks_in_worker_processes(prefect_backend) -> None:
    """--dask really leaves this process: tasks run in the cluster's 2 worker processes."""
    pids = set(with_dask(_where_tasks_run, None)())
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= LOCAL_CLUSTER["n_workers"]


def test_with_dask_builds_the_runner_asked_for() -> None:
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import backfill

    local = with_dask(backfill, None).task_runner
    remote = with_dask(backfill, "tcp://10.0.0.5:8786").task_runner
    assert isinstance(local, DaskTaskRunner) and isinstance(remote, DaskTaskRunner)
    assert local.address is None and local.cluster_kwargs == LOCAL_CLUSTER
    assert remote.address == "tcp://10.0.0.5:8786"
    assert backfill.task_runner is not local  # the original flow keeps its thread pool


def test_a_day_slot_blocks_the_same_day_only(prefect_backend) -> None:
    """Two runs of one day never overlap; other days go ahead; the wait ends in a clear error."""
    day, other = dt.date(2031, 1, 2), dt.date(2031, 1, 3)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with day_slots([day]):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(
            DayBusy, match=r"2031-01-02, 2031-01-03 held by another run for more than 1s"
        ):
            with day_slots([day, other], timeout_seconds=1):
                pytest.fail("entered a day another run holds")
        with day_slots([other], timeout_seconds=5):
            pass
    finally:
        release.set()
        holder.join(30)
    with day_slots([day], timeout_seconds=5):
        pass
