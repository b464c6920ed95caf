"""End to end through Prefect as operators run it: a real `prefect server`, `prefect deploy --all`
from prefect.yaml, runs created through the API and executed by `prefect worker start`, against
a moto S3 bucket and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from support_pipeline import (
    database,
    dir_objects,
    new_bucket,
    pipeline_env,
    run_days,
    upload,
    warehouse_tables,
)

ROOT = Path(__file__).resolve().parents[1]
POOL = "vdp-process"
SCHEDULED_AT = dt.datetime(2019, 6, 2, 3, 0, tzinfo=dt.UTC)
SOURCE_DAY = dt.date(2019, 6, 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(api_url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout}s")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A real `prefect server start` (no UI) with its own PREFECT_HOME; yields its env."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = open(home / "server.log", "wb")  # noqa: SIM115 (closed in teardown)
    process = subprocess.Popen(
        ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_healthy(env["PREFECT_API_URL"], process)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def deployed(prefect_server: dict[str, str]) -> dict[str, str]:
    """The work pool and every deployment of prefect.yaml, created as an operator would."""
    _prefect(prefect_server, "work-pool", "create", POOL, "--type", "process")
    _prefect(prefect_server, "--no-prompt", "deploy", "--all")
    return prefect_server


@pytest.fixture
def seeded_source(s3_bucket: str, s3_client, moto_endpoint: str) -> dict:
    """One generated source day (2019-06-01) in the moto bucket; returns its expected.json."""
    from flows.tools.generate import generate

    generate(
        f"s3://{s3_bucket}/",
        SOURCE_DAY,
        1,
        orgs=2,
        vehicles=8,
        seed=3,
        quirk_rate=0.01,
        s3_endpoint_url=moto_endpoint,
    )
    body = s3_client.get_object(Bucket=s3_bucket, Key="expected.json")["Body"].read()
    return json.loads(body)


def _assert_answer_matches(answer: list[tuple], expected: dict) -> None:
    """The warehouse view holds exactly the generator's live periods with its distances."""
    live = {p["operating_period_id"]: p for p in expected["periods"] if not p["is_deleted"]}
    assert [row[0] for row in answer] == sorted(live)
    for period_id, vehicles, avg_km, total_km in answer:
        want = live[period_id]
        assert vehicles == len(want["vehicle_distances"]), period_id
        assert total_km == pytest.approx(want["total_distance_km"], abs=1e-6), period_id
        if want["avg_distance_km"] is None:
            assert avg_km is None, period_id
        else:
            assert avg_km == pytest.approx(want["avg_distance_km"], abs=1e-6), period_id


async def _create_runs(api_url: str) -> dict[str, UUID]:
    """A daily run scheduled at 03:00 on 2019-06-02 with no date, and a backfill run whose
    parameters are invalid (end before start) to see how failures surface."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            daily = await client.read_deployment_by_name("daily-pipeline/daily")
            backfill = await client.read_deployment_by_name("backfill/backfill")
            assert daily.work_pool_name == POOL and backfill.work_pool_name == POOL
            assert [s.schedule.cron for s in daily.schedules] == ["0 3 * * *"]
            assert daily.global_concurrency_limit.limit == 1
            assert daily.concurrency_options.collision_strategy.value == "ENQUEUE"
            good = await client.create_flow_run_from_deployment(
                daily.id, state=Scheduled(scheduled_time=SCHEDULED_AT), parameters={}
            )
            bad = await client.create_flow_run_from_deployment(
                backfill.id, parameters={"start": "2019-06-03", "end": "2019-06-01"}
            )
    return {"daily": good.id, "bad_backfill": bad.id}


async def _read_runs_and_artifacts(api_url: str, run_ids: dict[str, UUID]) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            runs = {k: await client.read_flow_run(v) for k, v in run_ids.items()}
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_ids["daily"]])
                )
            )
    return {"runs": runs, "artifacts": {a.key: a for a in artifacts}}


def _warehouse(pg_url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(pg_url) as conn:
        answer = conn.execute(
            "select operating_period_id, vehicles, avg_distance_km, total_distance_km"
            " from warehouse.avg_distance_per_operating_period order by operating_period_id"
        ).fetchall()
        audit = conn.execute(
            "select flow_run_id::text, partition_date from warehouse.load_audit"
        ).fetchall()
    return answer, audit


def test_daily_deployment_runs_on_a_worker_and_reports(
    deployed: dict[str, str],
    seeded_source: dict,
    s3_bucket: str,
    moto_endpoint: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    env = dict(deployed)
    run_ids = asyncio.run(_create_runs(env["PREFECT_API_URL"]))

    env.update(
        VDP_SOURCE_URL=f"s3://{s3_bucket}/data/",
        VDP_S3_ENDPOINT_URL=moto_endpoint,
        VDP_S3_ANONYMOUS="true",
        VDP_LAKE_ROOT=str(tmp_path / "lake"),
        VDP_WAREHOUSE_URL=pg_url,
    )
    worker_log = _prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)
    (tmp_path / "worker.log").write_text(worker_log)
    seen = asyncio.run(_read_runs_and_artifacts(env["PREFECT_API_URL"], run_ids))

    daily, bad = seen["runs"]["daily"], seen["runs"]["bad_backfill"]
    assert daily.state.is_completed(), f"{daily.state.message}\n{worker_log[-3000:]}"
    assert bad.state.is_failed()
    assert "end 2019-06-01 is before start 2019-06-03" in bad.state.message

    answer, audit = _warehouse(pg_url)
    assert audit == [(str(run_ids["daily"]), SOURCE_DAY)]  # "yesterday" of the scheduled time
    _assert_answer_matches(answer, seeded_source)

    artifacts = seen["artifacts"]
    summary = artifacts[f"run-summary-{SOURCE_DAY}"]
    assert summary.type == "markdown"
    assert f"source day {SOURCE_DAY}" in summary.data and "succeeded" in summary.data
    table = artifacts[f"answer-{SOURCE_DAY}"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted(r["operating_period_id"] for r in rows) == [a[0] for a in answer]


async def _schedule_daily(api_url: str, scheduled_at: dt.datetime) -> UUID:
    """A run of the daily deployment as its cron would create it: no date, a scheduled time."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            daily = await client.read_deployment_by_name("daily-pipeline/daily")
            run = await client.create_flow_run_from_deployment(
                daily.id, state=Scheduled(scheduled_time=scheduled_at), parameters={}
            )
    return run.id


def test_scheduled_daily_run_catches_a_late_object_of_the_day_before(
    deployed: dict[str, str],
    prefect_backend: None,
    s3_bucket: str,
    moto_endpoint: str,
    pg_url: str,
    pg_server_url: str,
    tmp_path: Path,
) -> None:
    """D's scheduled run misses an object that lands later; D+1's scheduled run (no date)
    fetches it through its lookback, and the warehouse equals loading both days at once."""
    from flows.tools.generate import generate

    day2 = SOURCE_DAY + dt.timedelta(days=1)
    generate(str(tmp_path / "gen"), SOURCE_DAY, 2, orgs=2, vehicles=6, seed=5, quirk_rate=0.01)
    objects = dir_objects(tmp_path / "gen" / "data")
    late_key = sorted(k for k in objects if k.startswith(f"data/{SOURCE_DAY}-"))[-1]
    upload(moto_endpoint, s3_bucket, {k: v for k, v in objects.items() if k != late_key})

    env = dict(deployed)
    env.update(pipeline_env(f"s3://{s3_bucket}/data/", tmp_path / "lake", pg_url, moto_endpoint))
    api = env["PREFECT_API_URL"]
    first = asyncio.run(_schedule_daily(api, SCHEDULED_AT))
    _prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)
    upload(moto_endpoint, s3_bucket, {late_key: objects[late_key]})
    second = asyncio.run(_schedule_daily(api, SCHEDULED_AT + dt.timedelta(days=1)))
    log = _prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)

    seen = asyncio.run(_read_runs_and_artifacts(api, {"daily": second, "first": first}))
    for run in seen["runs"].values():
        assert run.state.is_completed(), f"{run.state.message}\n{log[-3000:]}"
    summary = seen["artifacts"][f"run-summary-{day2}"].data
    assert f"`{late_key}` ({SOURCE_DAY})" in summary
    with psycopg.connect(pg_url) as conn:
        audit = conn.execute(
            "select flow_run_id::text, source_days from warehouse.load_audit order by id"
        ).fetchall()
    assert audit == [(str(first), [SOURCE_DAY]), (str(second), [SOURCE_DAY, day2])]

    everything = new_bucket(moto_endpoint)
    upload(moto_endpoint, everything, objects)
    got = warehouse_tables(pg_url)
    # In-process runs use the session's temporary API: Prefect keeps one concurrency-slot
    # service per set of limit names for the life of the process, bound to the API it first
    # talked to, so these runs must not use the module's server (gone after this module).
    with database(pg_server_url) as url:
        run_days(
            pipeline_env(f"s3://{everything}/data/", tmp_path / "lake2", url, moto_endpoint),
            [SOURCE_DAY, day2],
        )
        assert got == warehouse_tables(url)
