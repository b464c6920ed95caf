"""Shared fixtures: a real S3 endpoint (moto's threaded server), a real PostgreSQL database
per test, a Prefect test backend, and a temporary lake root."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import conninfo, sql
from support_skips import skip_unless_required

SAMPLE_DIR = Path(
    os.environ.get("VDP_SAMPLE_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "door2door-2019-06-01"
)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "data").is_dir():
        skip_unless_required(
            f"real door2door sample not found at {SAMPLE_DIR} (VDP_SAMPLE_DIR)",
            "VDP_REQUIRE_SAMPLE",
        )
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client) -> Iterator[str]:
    """An empty bucket of its own for one test, removed afterwards."""
    name = f"vdp-test-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=obj["Key"])
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory) -> Iterator[str]:
    """URL of a real PostgreSQL server with rights to create databases: the one in
    VDP_TEST_WAREHOUSE_URL, else an embedded server (pgserver) for the session."""
    url = os.environ.get("VDP_TEST_WAREHOUSE_URL")
    if url:
        yield url
        return
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


def _with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (keeps host/socket parameters)."""
    info = conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return conninfo.make_conninfo(**info)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    dbname = f"vdp_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    yield _with_database(pg_server_url, dbname)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
        )


@pytest.fixture(scope="session")
def prefect_backend() -> Iterator[None]:
    """A temporary Prefect API for tests that run flows (request it explicitly)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
