"""Security: no password, DSN with a password or AWS secret reaches logs, console, Prefect logs,
artifacts, lake files, exceptions or load_audit; the loader role holds exactly the privileges
it uses and the analyst only reads; the repository holds no AWS keys or passwords in URLs."""

from __future__ import annotations

import logging
import re
import subprocess
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from flows.cli import main
from flows.settings import Settings
from flows.warehouse import connect, migrate

REPO = Path(__file__).resolve().parents[1]
DB_PASSWORD = f"Db-{uuid.uuid4().hex}-pw"
AWS_KEY_ID = "AKIA" + "Z" * 16  # built so the repository scan below does not flag it
AWS_SECRET = f"AwsSecret{uuid.uuid4().hex}Zq"
SECRETS = (DB_PASSWORD, AWS_SECRET)
LINES = (
    '{"event":"create","on":"operating_period","at":"2019-06-01T10:00:00Z","data":{"id":"p1",'
    '"start":"2019-06-01T10:00:00Z","finish":"2019-06-01T11:00:00Z"},"organization_id":"o"}\n'
    '{"event":"update","on":"vehicle","at":"2019-06-01T10:01:00Z","data":{"id":"v1","location":'
    '{"lat":52.5,"lng":13.4,"at":"2019-06-01T10:01:00Z"}},"organization_id":"o"}\n'
    '{"event":"update","on":"vehicle","at":"2019-06-01T10:02:00Z","data":{"id":"v1","location":'
    '{"lat":52.6,"lng":13.4,"at":"2019-06-01T10:02:00Z"}},"organization_id":"o"}\n'
    "not json\n"
)


@pytest.fixture
def secret_url(pg_url: str) -> Iterator[str]:
    """pg_url as a login role with a known password that owns the test database."""
    role = f"vdp_sec_{uuid.uuid4().hex[:8]}"
    info = conninfo.conninfo_to_dict(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {}").format(
                sql.Identifier(role), sql.Literal(DB_PASSWORD)
            )
        )
        conn.execute(
            sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(info["dbname"]), sql.Identifier(role)
            )
        )
        conn.execute(sql.SQL("alter schema public owner to {}").format(sql.Identifier(role)))
    yield conninfo.make_conninfo(pg_url, user=role, password=DB_PASSWORD)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("reassign owned by {} to current_user").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


def prefect_records(flow_run_id: object) -> str:
    """Every log line and artifact the Prefect API holds for one flow run, as text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert logs and artifacts, "expected the run's logs and artifacts in the Prefect API"
    return "\n".join([log.message for log in logs] + [repr(a.data) for a in artifacts])


@pytest.mark.slow
def test_a_pipeline_run_never_reveals_the_database_password_or_aws_secret(
    secret_url: str,
    s3_client,
    s3_bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch,
    caplog,
    capsys,
    prefect_backend: None,
) -> None:
    from flows.pipeline import daily_pipeline

    s3_client.put_object(Bucket=s3_bucket, Key="data/2019-06-01-10-00-0-events.json", Body=LINES)
    lake = tmp_path / "lake"
    env = {
        "VDP_SOURCE_URL": f"s3://{s3_bucket}/data/",
        "VDP_S3_ENDPOINT_URL": moto_endpoint,
        "VDP_S3_ANONYMOUS": "false",  # signed requests through the standard AWS chain
        "VDP_LAKE_ROOT": str(lake),
        "VDP_WAREHOUSE_URL": secret_url,
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    prefect_logger = logging.getLogger("prefect")  # does not propagate to the root logger
    prefect_logger.addHandler(caplog.handler)
    try:
        state = daily_pipeline(date="2019-06-01", return_state=True)
    finally:
        prefect_logger.removeHandler(caplog.handler)
    summary = state.result()

    assert summary["status"] == "succeeded" and summary["fetch"]["fetched"] == 1
    assert summary["stage"]["quarantined"] == 1
    with psycopg.connect(secret_url) as conn:  # the password really was used to log in
        assert conn.execute("select current_user").fetchone()[0].startswith("vdp_sec_")
        audit = conn.execute("select t::text from warehouse.load_audit t").fetchall()
        answer = conn.execute("select vehicles from warehouse.avg_distance_per_operating_period")
        assert answer.fetchall() == [(1,)]
    assert len(audit) == 1
    assert_no_secret(str(audit), "load_audit")
    captured = capsys.readouterr()
    assert_no_secret(captured.out + captured.err, "stdout/stderr")
    assert any("loaded run" in r.getMessage() for r in caplog.records)
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records), "Python logging")
    records = prefect_records(state.state_details.flow_run_id)
    assert "loaded run" in records and "Daily pipeline: source day 2019-06-01" in records
    assert_no_secret(records, "Prefect logs/artifacts")
    files = [p for p in lake.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        assert_no_secret(path.read_bytes().decode("utf-8", "replace"), str(path))


@pytest.mark.parametrize("argv", [["report"], ["backup", "OUT"]], ids=["report", "backup"])
def test_a_refused_connection_error_has_no_password(
    argv: list[str], tmp_path: Path, monkeypatch, capsys
) -> None:
    url = f"postgresql://vdp:{DB_PASSWORD}@127.0.0.1:1/vdp"
    monkeypatch.setenv("VDP_WAREHOUSE_URL", url)
    monkeypatch.setenv("VDP_LAKE_ROOT", str(tmp_path / "lake"))
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("vdp: error: cannot connect to the warehouse at postgresql://vdp:***@")
    assert_no_secret(err, "the CLI error")


def test_a_load_error_and_its_traceback_have_no_password(tmp_path: Path) -> None:
    from flows.load import fetch_answer, is_load_committed

    url = f"postgresql://vdp:{DB_PASSWORD}@127.0.0.1:1/vdp?connect_timeout=2"
    for call in (lambda: fetch_answer(url), lambda: is_load_committed(url, "run")):
        with pytest.raises(Exception) as caught:
            call()
        assert_no_secret("".join(traceback.format_exception(caught.value)), "a traceback")


# privileges -------------------------------------------------------------------------------------
def grants(conn: psycopg.Connection, role: str) -> set[tuple[str, str]]:
    query = (
        "select table_name, privilege_type from information_schema.role_table_grants "
        "where grantee = %s and table_schema = 'warehouse'"
    )
    return set(conn.execute(query, [role]).fetchall())


TABLES = (
    "dim_organization",
    "dim_vehicle",
    "dim_date",
    "fact_operating_period",
    "fact_break",
    "fact_vehicle_operating_period",
    "fact_vehicle_event",
)


def test_the_loader_has_exactly_the_privileges_it_uses(pg_url: str) -> None:
    with connect(pg_url) as conn:
        migrate(conn)
        dml = {(t, p) for t in TABLES for p in ("SELECT", "INSERT", "UPDATE", "DELETE")}
        assert grants(conn, "vdp_loader") == dml | {
            ("load_audit", "SELECT"),
            ("load_audit", "INSERT"),
            ("schema_migrations", "SELECT"),
            ("avg_distance_per_operating_period", "SELECT"),
        }
        readable = {r for (r,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'warehouse'"
        ).fetchall()}  # fmt: skip
        assert grants(conn, "vdp_analyst") == {(t, "SELECT") for t in readable}
        conn.execute("set role vdp_loader")
        denied = [
            "update warehouse.load_audit set run_id = 'x'",  # the audit trail is append-only
            "delete from warehouse.load_audit",
            "insert into warehouse.schema_migrations values (99, 'x', 'y')",
            "truncate warehouse.fact_vehicle_event",
            "drop table warehouse.dim_date",
            "alter table warehouse.dim_vehicle add column x int",
            "create schema loader_own",
        ]
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


# the repository ---------------------------------------------------------------------------------
AWS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_ASSIGN = re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{30,}", re.I)
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^@\s/'\"]+)@")
PLACEHOLDERS = {"***", "password", "PASSWORD", "<password>", "pass", "secret", "pw"}


def is_placeholder(password: str) -> bool:
    """A documentation placeholder, or a ${VARIABLE} the environment fills in (compose)."""
    return password in PLACEHOLDERS or password.startswith("${")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [REPO / name for name in out.splitlines() if (REPO / name).is_file()]


def test_no_credentials_in_tracked_files() -> None:
    files = tracked_files()
    assert any(p.name == "prefect.yaml" for p in files)
    leaks = []
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        rel = str(path.relative_to(REPO))
        leaks += [f"{rel}: AWS key id" for _ in AWS_KEY.finditer(text)]
        leaks += [f"{rel}: AWS secret" for _ in AWS_SECRET_ASSIGN.finditer(text)]
        if not rel.startswith("tests/"):  # tests hold made-up passwords on purpose
            found = (m.group(1) for m in URL_PASSWORD.finditer(text))
            leaks += [f"{rel}: password in a URL" for pw in found if not is_placeholder(pw)]
    assert leaks == []


def test_secrets_are_never_plain_settings() -> None:
    settings = Settings(warehouse_url=f"postgresql://u:{DB_PASSWORD}@h/db")
    assert_no_secret(repr(settings) + str(settings.model_dump()), "the settings repr")
    assert not [name for name in Settings.model_fields if "secret" in name or "key" in name]
