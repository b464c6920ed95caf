"""The `vdp` command line as users run it (a subprocess): a failure is exit code 1 with exactly
one `vdp: error:` line on stderr and nothing written to the lake; run, query and generate
work on real data."""

from __future__ import annotations

import pytest
from support_pipeline import (
    SAMPLE_DAY,
    audit_rows,
    new_bucket,
    one_error_line,
    pipeline_env,
    tree_hashes,
    upload,
    vdp,
)

SAMPLE_EVENTS = 35_351


@pytest.mark.parametrize(
    "days",
    [["--date", "2019-06-01"], ["--start", "2019-06-01", "--end", "2019-06-02"]],
    ids=["daily", "backfill"],
)
def test_missing_bucket_fails_in_one_line_and_writes_nothing(
    days: list[str], prefect_backend, moto_endpoint: str, tmp_path, pg_url: str
) -> None:
    lake = tmp_path / "lake"
    env = pipeline_env("s3://vdp-no-such-bucket/data/", lake, pg_url, moto_endpoint)
    line = one_error_line(vdp("run", *days, env=env))
    assert line.startswith("vdp: error: bucket 'vdp-no-such-bucket' does not exist at http")
    assert not lake.exists()
    assert audit_rows(pg_url) == []  # the warehouse was not even migrated


@pytest.mark.slow
def test_wrong_endpoint_fails_in_one_line_and_writes_nothing(
    prefect_backend, tmp_path, pg_url: str
) -> None:
    """Connection refused is retried (it may be transient), then reported in one line."""
    lake = tmp_path / "lake"
    env = pipeline_env("s3://some-bucket/data/", lake, pg_url, "http://127.0.0.1:1")
    line = one_error_line(vdp("run", "--date", SAMPLE_DAY.isoformat(), env=env))
    assert "cannot reach S3 endpoint http://127.0.0.1:1" in line
    assert not lake.exists()


def test_lake_root_under_a_regular_file_fails_in_one_line(
    prefect_backend, moto_endpoint: str, tmp_path, pg_url: str
) -> None:
    """Tests run as root, so permissions cannot make a directory unwritable; a path under a
    regular file can never be created."""
    bucket = new_bucket(moto_endpoint)
    # One object, so the day passes the feed check and the lake root is what fails.
    upload(moto_endpoint, bucket, {f"data/{SAMPLE_DAY}-00-00-0-events.json": b"{}\n"})
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file, not a directory\n")
    lake = blocker / "lake"
    env = pipeline_env(f"s3://{bucket}/data/", lake, pg_url, moto_endpoint)
    line = one_error_line(vdp("run", "--date", SAMPLE_DAY.isoformat(), env=env))
    assert f"lake root {lake} is not writable" in line
    assert blocker.read_text() == "a file, not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-directory"]


def test_run_then_query_counts_the_sample(
    prefect_backend, sample_dir, tmp_path, pg_url: str
) -> None:
    """`vdp run` on the real sample (a local directory source), then `vdp query` over the lake."""
    lake = tmp_path / "lake"
    env = pipeline_env(str(sample_dir / "data"), lake, pg_url)
    run = vdp("run", "--date", SAMPLE_DAY.isoformat(), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""
    assert "2019-06-01: fetched 721/721 objects, staged 35,351 events" in run.stdout

    query = vdp("query", "select count(*) as n, min(event_date) as d from events", env=env)
    assert (query.returncode, query.stderr) == (0, "")
    assert query.stdout.splitlines() == [
        "    n | d",
        "------+-----------",
        f"{SAMPLE_EVENTS} | 2019-06-01",
        "(1 row)",
    ]

    bad = vdp("query", "select * from no_such_view", env=env)
    assert "query failed" in one_error_line(bad)


def test_generate_with_the_same_seed_writes_identical_bytes(tmp_path) -> None:
    args = ["--start", "2019-06-01", "--days", "2", "--orgs", "1", "--vehicles", "3"]
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        result = vdp("generate", "--out", str(out), *args, "--seed", "5", env={})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("wrote ")
    first, second = (tree_hashes(out) for out in outs)
    assert first == second
    assert "expected.json" in first and len(first) > 10

    other = tmp_path / "other-seed"
    assert vdp("generate", "--out", str(other), *args, "--seed", "6", env={}).returncode == 0
    assert tree_hashes(other) != first


def test_query_on_a_missing_lake_root_fails_without_creating_it(tmp_path) -> None:
    lake = tmp_path / "mistyped-lake"
    line = one_error_line(
        vdp("query", "select count(*) from events", env={"VDP_LAKE_ROOT": str(lake)})
    )
    assert line == (
        f"vdp: error: no lake at {lake}: point VDP_LAKE_ROOT (or --lake-root) at the lake, "
        "or run `vdp run` first"
    )
    assert not lake.exists()


def test_report_with_an_unreachable_warehouse_fails_in_one_line_without_the_password(
    tmp_path,
) -> None:
    url = "postgresql://analyst:s3cret-pw@127.0.0.1:1/warehouse"
    env = {"VDP_LAKE_ROOT": str(tmp_path / "lake"), "VDP_WAREHOUSE_URL": url}
    line = one_error_line(vdp("report", env=env))
    assert "cannot connect to the warehouse at postgresql://analyst:***@127.0.0.1:1/" in line
    assert "s3cret-pw" not in line
    assert not (tmp_path / "lake").exists()
