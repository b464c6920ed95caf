"""Late objects and the raw zone as the system of record: a daily run's lookback fetches what
landed after an earlier day ran and publishes it with its own day; a lookback day with nothing
new costs a listing only; objects deleted from the bucket stay in the lake; `vdp reprocess`
rebuilds days from the raw files with the source gone. Real moto S3, PostgreSQL and Prefect."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from support_pipeline import (
    REPO,
    database,
    dir_objects,
    new_bucket,
    one_error_line,
    pipeline_env,
    run_days,
    s3,
    settings_env,
    upload,
    vdp,
    warehouse_tables,
)

from flows.report import late_objects
from flows.tools.generate import generate

D1, D2, D3 = dt.date(2019, 6, 1), dt.date(2019, 6, 2), dt.date(2019, 6, 3)
LATE_COUNT = 3

pytestmark = pytest.mark.usefixtures("prefect_backend")


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, bytes]:
    """Three generated source days as object key -> bytes."""
    out = tmp_path_factory.mktemp("generated")
    generate(str(out), D1, 3, orgs=2, vehicles=6, seed=11, quirk_rate=0.01)
    return dir_objects(out / "data")


def _of(objects: dict[str, bytes], *days: dt.date) -> dict[str, bytes]:
    names = tuple(f"data/{d.isoformat()}-" for d in days)
    return {k: v for k, v in objects.items() if k.startswith(names)}


def _last(objects: dict[str, bytes], day: dt.date, count: int) -> dict[str, bytes]:
    """The day's last ``count`` objects by key: the ones a late upload would miss."""
    keys = sorted(_of(objects, day))[-count:]
    return {k: objects[k] for k in keys}


def _files(root: Path, pattern: str) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of every file matching pattern under root."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.glob(pattern))
        if p.is_file()
    }


def _source_days(url: str) -> list[list[dt.date]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select source_days from warehouse.load_audit order by id")
        return [list(days) for (days,) in rows.fetchall()]


def _all_at_once(objects, days, endpoint, server_url, root: Path) -> dict:
    """The warehouse tables after loading every object of ``days`` up front, day by day."""
    bucket = new_bucket(endpoint)
    upload(endpoint, bucket, _of(objects, *days))
    with database(server_url) as url:
        run_days(pipeline_env(f"s3://{bucket}/data/", root, url, endpoint), days)
        return warehouse_tables(url)


def test_a_late_object_is_caught_by_the_next_daily_run(
    objects, moto_endpoint: str, pg_server_url: str, tmp_path: Path
) -> None:
    late = _last(objects, D1, LATE_COUNT)
    bucket = new_bucket(moto_endpoint)
    upload(moto_endpoint, bucket, {k: v for k, v in _of(objects, D1, D2).items() if k not in late})
    lake = tmp_path / "lake"
    with database(pg_server_url) as url:
        env = pipeline_env(f"s3://{bucket}/data/", lake, url, moto_endpoint)
        (first,) = run_days(env, [D1])
        # the three days before D1 list nothing and leave no trace in the lake
        assert [d["listed"] for d in first["lookback"]] == [0, 0, 0]
        assert sorted(p.name for p in (lake / "raw").glob("source_day=*")) == [f"source_day={D1}"]
        upload(moto_endpoint, bucket, late)
        (second,) = run_days(env, [D2])

        assert late_objects(second) == [(D1.isoformat(), k) for k in sorted(late)]
        assert second["late_periods"], "the late objects hold points of D1's periods"
        assert set(second["late_periods"]) <= set(second["recomputed_periods"])
        assert second["published_source_days"] == [D1.isoformat(), D2.isoformat()]
        assert _source_days(url) == [[D1], [D1, D2]]
        got = warehouse_tables(url)
    assert got == _all_at_once(objects, [D1, D2], moto_endpoint, pg_server_url, tmp_path / "b")


def test_a_lookback_day_with_nothing_new_is_not_restaged_and_zero_turns_it_off(
    objects, moto_endpoint: str, pg_server_url: str, tmp_path: Path
) -> None:
    late = _last(objects, D1, 1)
    bucket = new_bucket(moto_endpoint)
    upload(
        moto_endpoint, bucket, {k: v for k, v in _of(objects, D1, D2, D3).items() if k not in late}
    )
    lake = tmp_path / "lake"
    with database(pg_server_url) as url:
        env = pipeline_env(f"s3://{bucket}/data/", lake, url, moto_endpoint)
        run_days(env, [D1, D2])
        d1_files = f"*/**/source_day={D1}/*"
        before = _files(lake, d1_files)
        assert any(k.startswith("events/") for k in before) and any(
            k.startswith("quarantine/") for k in before
        )
        (third,) = run_days(env, [D3])
        lookback = {d["source_day"]: d for d in third["lookback"]}
        assert lookback[D1.isoformat()]["listed"] == len(_of(objects, D1)) - 1
        assert not any(d["staged"] or d["late_objects"] for d in lookback.values())
        assert third["published_source_days"] == [D3.isoformat()]
        assert _files(lake, d1_files) == before  # not re-staged: same files, same times

        upload(moto_endpoint, bucket, late)
        from flows.pipeline import daily_pipeline

        with settings_env(env):
            off = daily_pipeline(date=D3, lookback_days=0)
        assert off["lookback"] == [] and off["published_source_days"] == [D3.isoformat()]
        assert _files(lake, d1_files) == before
        manifest = (lake / "raw" / "_manifests" / f"source_day={D1}.json").read_text()
        assert next(iter(late)) not in manifest  # lookback 0: the late object is not fetched

        (again,) = run_days(env, [D3])
        assert late_objects(again) == [(D1.isoformat(), next(iter(late)))]
        assert _files(lake, d1_files) != before


def test_deleted_objects_stay_and_reprocess_needs_no_source(
    objects, pg_server_url: str, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    lake = tmp_path / "lake"
    try:
        bucket = new_bucket(endpoint)
        upload(endpoint, bucket, _of(objects, D1, D2, D3))
        with database(pg_server_url) as url:
            env = pipeline_env(f"s3://{bucket}/data/", lake, url, endpoint)
            run_days(env, [D1, D2])
            kept = _files(lake, f"raw/source_day={D1}/*") | _files(
                lake, f"events/*/source_day={D1}/*"
            )
            for key in _of(objects, D1):
                s3(endpoint).delete_object(Bucket=bucket, Key=key)
            (third,) = run_days(env, [D3])  # its lookback lists D1: now empty
            assert {d["source_day"]: d["listed"] for d in third["lookback"]}[D1.isoformat()] == 0
            assert (
                _files(lake, f"raw/source_day={D1}/*") | _files(lake, f"events/*/source_day={D1}/*")
                == kept
            )
            before = warehouse_tables(url)
            server.stop()
            server = None

            result = vdp("reprocess", "--start", str(D1), "--end", str(D2), env=env, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            assert f"{D1}: fetched 0/{len(_of(objects, D1))} objects" in result.stdout
            assert warehouse_tables(url) == before
            assert _source_days(url)[-2:] == [[D1], [D2]]

            never = vdp("reprocess", "--start", "2019-05-30", "--end", str(D1), env=env)
            assert "no raw data for source day 2019-05-30" in one_error_line(never)
            pruned = vdp("prune", "--raw-older-than", "0", env=env)
            assert pruned.returncode == 0, pruned.stderr
            refused = vdp("reprocess", "--start", str(D1), "--end", str(D1), env=env)
            assert "removed by `vdp prune`" in one_error_line(refused)
            assert warehouse_tables(url) == before
    finally:
        if server is not None:
            server.stop()


def _cli_run(env: dict[str, str], day: dt.date) -> subprocess.CompletedProcess:
    return vdp("run", "--date", str(day), env=env, timeout=600)


def test_two_daily_runs_with_overlapping_lookbacks_take_turns(
    objects, moto_endpoint: str, pg_server_url: str, tmp_path: Path
) -> None:
    late = _last(objects, D1, LATE_COUNT) | _last(objects, D2, 1)
    bucket = new_bucket(moto_endpoint)
    upload(moto_endpoint, bucket, {k: v for k, v in _of(objects, D1, D2).items() if k not in late})
    with database(pg_server_url) as url:
        env = pipeline_env(f"s3://{bucket}/data/", tmp_path / "lake", url, moto_endpoint)
        run_days(env, [D1, D2])
        upload(moto_endpoint, bucket, late | _of(objects, D3))
        # D3's run looks back over D1 and D2; a rerun of D2 looks back over D1: both at once
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda d: _cli_run(env, d), [D3, D2]))
        for result in results:
            assert result.returncode == 0, result.stderr[-2000:]
        caught = [
            line for r in results for line in r.stdout.splitlines() if "late objects:" in line
        ]
        counted = sum(int(line.split("late objects:")[1].split()[0]) for line in caught)
        # D2's late object is the D2 run's own news when that run goes first, else D3's late one
        own = next(ln for ln in results[1].stdout.splitlines() if ln.startswith(f"{D2}: fetched"))
        fetched_by_d2 = int(own.split("fetched ")[1].split("/")[0])
        assert fetched_by_d2 in (0, 1)
        assert counted + fetched_by_d2 == len(late)  # each late object fetched by one run only
        got = warehouse_tables(url)
    assert got == _all_at_once(objects, [D1, D2, D3], moto_endpoint, pg_server_url, tmp_path / "b")


def test_lookback_flag_is_checked(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--date", "2019-06-01", "--lookback-days", "-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a number of days (0 or more): '-1'" in bad.stderr
    both = vdp(
        "run", "--start", "2019-06-01", "--end", "2019-06-02", "--lookback-days", "1", env={}
    )
    assert "--lookback-days applies to a daily run" in one_error_line(both)
