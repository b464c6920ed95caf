"""Upgrade: a lake and warehouse written by the version before the incremental state (its code
taken from git history) keep working. The first run of this version builds the state from
what is there, and the warehouse and curated tables equal a fresh all-at-once load."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal
from support_pipeline import database, settings_env, warehouse_tables
from test_history import KEYS, curated, stage_days

from flows.lake import Lake

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "1c6aae4"  # the last commit whose lake has no state/ zone
START = dt.date(2019, 6, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]

OLD_RUN = """
import datetime as dt, sys, uuid
from pathlib import Path
from flows.lake import Lake, Swap
from flows.load import load_run
from flows.stage import stage_source_day
from flows.transform import transform
from flows.warehouse import connect, migrate

lake, url = Lake(Path(sys.argv[1])), sys.argv[2]
with connect(url) as conn:
    migrate(conn)
for day in [dt.date.fromisoformat(d) for d in sys.argv[3:]]:
    stage_source_day(lake, day)
    with lake.scratch("old") as out:
        result = transform(lake, [day], out / "curated")
        swap = Swap(lake, uuid.uuid4().hex, result.swap_moves(lake))
        load_run(url, out / "curated", run_id=swap.txn, partition_date=day,
                 period_ids=result.recomputed_period_ids, event_dates=result.event_dates)
        swap.publish()
        swap.commit()
"""


@pytest.fixture(scope="module")
def previous_code(tmp_path_factory) -> Path:
    """The previous version's package, extracted from git (no worktree, nothing changed)."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS, "flows", "warehouse_sql"],
        capture_output=True,
    )
    if found.returncode != 0:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout's history: {found.stderr!r}")
    out = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as archive:
        archive.extractall(out, filter="data")
    return out


def run_previous(code: Path, lake: Lake, url: str, days: list[dt.date]) -> None:
    args = [str(lake.root), url, *(d.isoformat() for d in days)]
    done = subprocess.run(
        [sys.executable, "-c", OLD_RUN, *args],
        cwd=code,
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def publish_now(lake: Lake, url: str, days: list[dt.date]) -> dict:
    """publish_days inside a flow run, as the daily flow calls it (its tasks log to the run)."""
    from prefect import flow

    from flows.publish import publish_days
    from flows.settings import get_settings

    env = {"VDP_LAKE_ROOT": str(lake.root), "VDP_WAREHOUSE_URL": url}
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    with settings_env(env):
        publish = flow(name="upgrade-test-publish")(
            lambda: publish_days(get_settings(), lake, days, run_id, 1)
        )
        return publish()


def test_a_lake_and_warehouse_of_the_previous_version_upgrade_without_a_manual_step(
    prefect_backend, previous_code: Path, pg_server_url: str, tmp_path: Path
) -> None:
    from flows.tools.generate import generate

    generate(
        str(tmp_path / "gen"), START, len(DAYS), orgs=2, vehicles=4, seed=5, events_per_day=3000
    )
    data = tmp_path / "gen" / "data"
    old = Lake(tmp_path / "old")
    with database(pg_server_url) as old_url, database(pg_server_url) as fresh_url:
        for day in DAYS[:2]:
            (old.raw_day(day)).mkdir(parents=True, exist_ok=True)
            for path in sorted(data.glob(f"{day.isoformat()}-*")):
                (old.raw_day(day) / path.name).write_bytes(path.read_bytes())
        run_previous(previous_code, old, old_url, DAYS[:2])
        assert not old.state_dir.exists()
        assert (old.curated_table("fact_vehicle_operating_period") / "part-0.parquet").is_file()

        stage_days(old, data, DAYS[2:])
        upgraded = publish_now(old, old_url, DAYS[2:])
        assert upgraded["published_source_days"] == [d.isoformat() for d in DAYS]
        again = publish_now(old, old_url, DAYS[2:])
        assert again["published_source_days"] == [DAYS[2].isoformat()]
        # the previous version quarantined break lines (unknown_entity): re-staging its days
        # from the raw zone, as running them again does, brings their breaks in
        breaks_before_restage = curated(old)["fact_break"].height
        stage_days(old, data, DAYS[:2])
        publish_now(old, old_url, DAYS[:2])

        fresh = Lake(tmp_path / "fresh")
        stage_days(fresh, data, DAYS)
        publish_now(fresh, fresh_url, DAYS)
        assert warehouse_tables(old_url) == warehouse_tables(fresh_url)
        got, want = curated(old), curated(fresh)
        for table in KEYS:
            assert_frame_equal(got[table], want[table], check_exact=True)
        assert breaks_before_restage < want["fact_break"].height
        # the old single-file table was replaced by period-date partitions
        assert not list(old.curated_table("fact_vehicle_operating_period").glob("*.parquet"))
