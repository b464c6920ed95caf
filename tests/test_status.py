"""`vdp status` as monitors run it (a subprocess): on a fresh warehouse it fails as stale; after
a run it shows the newest loaded source day, the newest event, the last load and run, and the
recent days' quarantine shares, and exits by --max-lag-days; a password is never printed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import duckdb
import psycopg
import pytest
from psycopg import conninfo
from support_pipeline import database, new_bucket, one_error_line, pipeline_env, run_days, vdp

LOADED = dt.date(2019, 6, 1)
PASSWORD = "s3cret-pw"


def _with_password(url: str) -> str:
    """The same database with a password in the URL (trust auth ignores it)."""
    info = conninfo.conninfo_to_dict(url)
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql://{info.get('user', 'postgres')}:{PASSWORD}@{host}:{port}/{info['dbname']}"


def _status(env: dict[str, str], *args: str):
    result = vdp("status", "--json", *args, env=env)
    return result, json.loads(result.stdout)


def test_fresh_warehouse_is_stale(prefect_backend, pg_url: str, tmp_path) -> None:
    env = pipeline_env(str(tmp_path / "src"), tmp_path / "lake", _with_password(pg_url))
    result, status = _status(env)
    line = one_error_line(result)
    assert line.startswith("vdp: error: stale: no source day loaded yet into the warehouse at ")
    assert status["newest_source_day"] is None and status["loads"] == 0
    assert status["stale"] is True and status["newest_event_at"] is None
    assert PASSWORD not in result.stdout + result.stderr
    assert ":***@" in status["warehouse"]
    assert not (tmp_path / "lake").exists()


@pytest.fixture(scope="module")
def loaded(prefect_backend, moto_endpoint: str, pg_server_url: str, tmp_path_factory) -> Iterator:
    from flows.tools.generate import generate

    bucket = new_bucket(moto_endpoint)
    generate(
        f"s3://{bucket}/",
        LOADED,
        1,
        orgs=1,
        vehicles=4,
        seed=9,
        quirk_rate=0.05,
        s3_endpoint_url=moto_endpoint,
    )
    with database(pg_server_url) as url:
        lake = tmp_path_factory.mktemp("status") / "lake"
        env = pipeline_env(f"s3://{bucket}/data/", lake, _with_password(url), moto_endpoint)
        run_days(env, [LOADED])
        yield env, lake, url


def test_after_a_run_the_figures_match_the_lake_and_load_audit(loaded) -> None:
    env, lake, url = loaded
    today = LOADED + dt.timedelta(days=2)
    result, status = _status(env, "--today", today.isoformat(), "--max-quarantine-share", "0")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(url) as conn:
        run_id, flow_run_id, finished = conn.execute(
            "select run_id, flow_run_id, finished_at from warehouse.load_audit"
        ).fetchone()
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    newest = con.execute(f"select max(\"at\") from '{lake}/events/**/*.parquet'").fetchone()[0]
    quarantined = con.execute(f"select count(*) from '{lake}/quarantine/**/*.parquet'").fetchone()
    events = con.execute(f"select count(*) from '{lake}/events/**/*.parquet'").fetchone()[0]
    assert quarantined[0] > 0  # the generator's quirks include bad lines
    assert status["newest_source_day"] == "2019-06-01" and status["lag_days"] == 2
    assert status["stale"] is False and status["loads"] == 1
    assert dt.datetime.fromisoformat(status["newest_event_at"]) == newest
    assert status["last_load"]["run_id"] == run_id
    assert dt.datetime.fromisoformat(status["last_load"]["finished_at"]) == finished
    assert status["last_run"]["flow_run_id"] == flow_run_id
    assert status["last_run"]["state"] == "Completed"
    assert status["quarantine_over"] == [
        {
            "source_day": "2019-06-01",
            "quarantined": quarantined[0],
            "events": events,
            "share": round(quarantined[0] / (quarantined[0] + events), 6),
        }
    ]
    assert PASSWORD not in result.stdout + result.stderr


def test_table_output_and_stale_exit_code(loaded) -> None:
    env, _, _ = loaded
    fresh = vdp("status", "--today", "2019-06-03", "--max-quarantine-share", "0.99", env=env)
    assert fresh.returncode == 0, fresh.stderr
    lines = dict(line.split("  ", 1) for line in fresh.stdout.strip().splitlines())
    assert lines["newest source day"].strip().startswith("2019-06-01 (2 day(s) behind 2019-06-03")
    assert lines["quarantine > 99.0%"].strip() == "none in recent days"
    assert lines["last daily run"].strip().startswith("Completed at ")
    stale = vdp("status", "--today", "2019-06-04", env=env)
    assert one_error_line(stale) == (
        "vdp: error: stale: newest loaded source day 2019-06-01 is 3 days behind 2019-06-04 "
        "(--max-lag-days 2)"
    )
    assert "STALE" in stale.stdout and PASSWORD not in stale.stdout + stale.stderr
    allowed = vdp("status", "--today", "2019-06-04", "--max-lag-days", "3", env=env)
    assert allowed.returncode == 0, allowed.stderr
