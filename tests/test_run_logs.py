"""A normal run's logs hold nothing a user cannot act on: a backfill (tasks in a thread pool,
where Prefect used to warn of every timeout it cannot enforce) and a daily run of generated
days print no WARNING or ERROR line and nothing on stderr."""

from __future__ import annotations

import re

import pytest
from support_pipeline import pipeline_env, vdp

NOT_NORMAL = re.compile(r"\| (WARNING|ERROR|CRITICAL) +\||Warning:|Traceback")
DAYS = ["--start", "2019-06-02", "--end", "2019-06-03"]


def _noise(output: str) -> list[str]:
    return [line for line in output.splitlines() if NOT_NORMAL.search(line)]


@pytest.mark.slow
def test_backfill_and_daily_run_log_no_warnings(prefect_backend, tmp_path, pg_url: str) -> None:
    source = tmp_path / "source"
    generated = vdp("generate", "--out", str(source), *DAYS[:2], "--days", "2", env={})
    assert generated.returncode == 0, generated.stderr
    env = pipeline_env(str(source / "data"), tmp_path / "lake", pg_url)
    for args in (["run", *DAYS], ["run", "--date", "2019-06-03"]):
        run = vdp(*args, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.count(": fetched ") == (2 if "--start" in args else 1), run.stdout
        assert (run.stderr, _noise(run.stdout)) == ("", []), args
