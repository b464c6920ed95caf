"""Helpers for end-to-end tests through the real entry points: seed moto buckets, run flows
under VDP_* settings, run the `vdp` CLI as a subprocess, and snapshot the warehouse and lake."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import conninfo, sql

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DAY = dt.date(2019, 6, 1)
# Tables compared between two loads: every warehouse table but the per-load bookkeeping.
NOT_COMPARED = {"load_audit", "schema_migrations"}
ANSWER_VIEW = "avg_distance_per_operating_period"


# S3 -----------------------------------------------------------------------------------------
def s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    name = f"vdp-e2e-{uuid.uuid4().hex[:10]}"
    s3(endpoint).create_bucket(Bucket=name)
    return name


def upload(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    """Put objects public-read (the pipeline reads anonymously, as from the public bucket)."""
    client = s3(endpoint)

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1], ACL="public-read")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, objects.items()))


def dir_objects(data_dir: Path, prefix: str = "data/") -> dict[str, bytes]:
    """Every file of a directory as object key -> bytes."""
    return {f"{prefix}{p.name}": p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file()}


# PostgreSQL ----------------------------------------------------------------------------------
def create_database(server_url: str) -> str:
    name = f"vdp_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    info = conninfo.conninfo_to_dict(server_url)
    return conninfo.make_conninfo(**{**info, "dbname": name})


def drop_database(url: str, server_url: str) -> None:
    name = conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def clone_database(server_url: str, template_url: str) -> str:
    """A new database copied from another (which must have no open sessions)."""
    name = f"vdp_e2e_{uuid.uuid4().hex[:10]}"
    template = conninfo.conninfo_to_dict(template_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("create database {} template {}")
        conn.execute(query.format(sql.Identifier(name), sql.Identifier(template)))
    info = conninfo.conninfo_to_dict(server_url)
    return conninfo.make_conninfo(**{**info, "dbname": name})


@contextmanager
def database(server_url: str, template_url: str | None = None) -> Iterator[str]:
    """A fresh database, or a copy of ``template_url``'s (which must have no open sessions),
    dropped afterwards: for module-scoped fixtures and private copies (pg_url is per test)."""
    url = clone_database(server_url, template_url) if template_url else create_database(server_url)
    try:
        yield url
    finally:
        drop_database(url, server_url)


def warehouse_tables(url: str) -> dict[str, list[tuple]]:
    """Every row of every warehouse table (load bookkeeping aside), as sorted tuples."""
    with psycopg.connect(url) as conn:
        # Partitions (named per load) are compared through their parent table.
        names = conn.execute(
            "select relname::text from pg_class where relnamespace = to_regnamespace('warehouse')"
            " and relkind in ('r', 'p') and not relispartition order by 1"
        ).fetchall()
        tables = {}
        for (name,) in names:
            if name in NOT_COMPARED:
                continue
            query = sql.SQL("select * from {}").format(sql.Identifier("warehouse", name))
            tables[name] = sorted(conn.execute(query).fetchall(), key=_sort_key)
        return tables


def _sort_key(row: tuple) -> tuple:
    return tuple((value is None, str(value)) for value in row)


def answer_rows(url: str) -> dict[str, dict]:
    """The BI view by period id."""
    with psycopg.connect(url) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        rows = cursor.execute(f"select * from warehouse.{ANSWER_VIEW}").fetchall()
    return {row["operating_period_id"]: row for row in rows}


def audit_rows(url: str) -> list[tuple]:
    """load_audit rows, or [] when the warehouse schema does not exist yet."""
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass('warehouse.load_audit')").fetchone()[0] is None:
            return []
        return conn.execute("select * from warehouse.load_audit order by id").fetchall()


def warehouse_state(url: str) -> dict[str, list]:
    """Tables, the BI view and load_audit: what a failed run must leave exactly as it was."""
    try:
        state: dict[str, list] = dict(warehouse_tables(url))
        state[ANSWER_VIEW] = sorted(answer_rows(url).items())
    except psycopg.errors.UndefinedTable:
        state = {}
    state["load_audit"] = audit_rows(url)
    return state


# lake ----------------------------------------------------------------------------------------
def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root ({} when root is absent)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# flows and CLI -------------------------------------------------------------------------------
def pipeline_env(
    source_url: str, lake_root: Path, warehouse_url: str, endpoint: str | None = None
) -> dict[str, str]:
    env = {
        "VDP_SOURCE_URL": source_url,
        "VDP_LAKE_ROOT": str(lake_root),
        "VDP_WAREHOUSE_URL": warehouse_url,
        "VDP_S3_ANONYMOUS": "true",
    }
    if endpoint:
        env["VDP_S3_ENDPOINT_URL"] = endpoint
    return env


@contextmanager
def settings_env(env: dict[str, str]) -> Iterator[None]:
    """VDP_* variables for in-process flows (usable from module-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("VDP_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        yield


def run_days(env: dict[str, str], days: list[dt.date]) -> list[dict]:
    """daily_pipeline for each day in the given order, under ``env``."""
    from flows.pipeline import daily_pipeline

    with settings_env(env):
        return [daily_pipeline(date=day) for day in days]


def run_day_state(env: dict[str, str], day: dt.date):
    """daily_pipeline for one day under ``env``, returning its final Prefect state (no raise)."""
    from flows.pipeline import daily_pipeline

    with settings_env(env):
        return daily_pipeline(date=day, return_state=True)


def run_artifacts(flow_run_id) -> dict[str, str]:
    """Artifacts a flow run created, read back from the Prefect API: key -> data."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    wanted = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=wanted)
    return {a.key: a.data for a in found}


def vdp(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the `vdp` CLI in a subprocess against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    base = {k: v for k, v in os.environ.items() if not k.startswith(("VDP_", "PREFECT_"))}
    base.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value() or ""),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI failed with exactly one `vdp: error:` line on stderr; returns that line."""
    assert result.returncode != 0, result.stdout[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("vdp: error: "), lines[0]
    return lines[0]


def table_column(stdout: str, column: int = 0) -> list[str]:
    """The values of one column of a `format_table` output (header, rule, rows, count)."""
    lines = stdout.strip().splitlines()
    return [line.split(" | ")[column].strip() for line in lines[2:-1]]
