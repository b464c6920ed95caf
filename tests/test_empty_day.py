"""Empty source days fail loudly: a daily run whose own day lists no objects exits non-zero with
one line naming the day and the source, leaves lake and warehouse as they were, and says the same
in its Prefect state and run-summary artifact; VDP_MIN_OBJECTS_PER_DAY=0 or --allow-empty lets
a known-empty day pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_pipeline import (
    audit_rows,
    new_bucket,
    one_error_line,
    pipeline_env,
    run_artifacts,
    run_day_state,
    run_days,
    tree_hashes,
    vdp,
    warehouse_state,
)

from flows.feed import EmptySourceDay, require_objects
from flows.settings import get_settings

LOADED = dt.date(2019, 6, 1)
EMPTY = dt.date(2019, 6, 2)


@pytest.fixture(scope="module")
def loaded(prefect_backend, moto_endpoint: str, pg_server_url: str, tmp_path_factory) -> Iterator:
    """A bucket with one generated day (LOADED) and a lake and warehouse that loaded it; the
    next day (EMPTY) has no objects at all."""
    from support_pipeline import database

    from flows.tools.generate import generate

    bucket = new_bucket(moto_endpoint)
    generate(
        f"s3://{bucket}/", LOADED, 1, orgs=1, vehicles=4, seed=5, s3_endpoint_url=moto_endpoint
    )
    with database(pg_server_url) as url:
        lake = tmp_path_factory.mktemp("empty-day") / "lake"
        env = pipeline_env(f"s3://{bucket}/data/", lake, url, moto_endpoint)
        run_days(env, [LOADED])
        yield env, lake, url, bucket


@pytest.mark.parametrize(
    ("minimum", "listed", "message"),
    [
        (1, 1, None),  # the default: one object is a delivered day
        (0, 0, None),  # 0 turns the check off
        (1, 0, "no objects for source day 2019-06-02 under directory"),
        (3, 2, "only 2 objects for source day 2019-06-02 under directory"),
    ],
)
def test_require_objects_applies_the_setting(
    minimum: int, listed: int, message: str | None, tmp_path: Path
) -> None:
    settings = get_settings(source_url=str(tmp_path), min_objects_per_day=minimum)
    if message is None:
        require_objects(settings, EMPTY, ["obj"] * listed)
        return
    with pytest.raises(EmptySourceDay) as raised:
        require_objects(settings, EMPTY, ["obj"] * listed)
    assert str(raised.value).startswith(message)
    assert "is the feed down?" in str(raised.value)


def test_empty_day_fails_in_one_line_and_writes_nothing(loaded) -> None:
    env, lake, url, bucket = loaded
    before_lake, before_wh = tree_hashes(lake), warehouse_state(url)
    line = one_error_line(vdp("run", "--date", EMPTY.isoformat(), env=env))
    assert line.startswith(
        f"vdp: error: no objects for source day {EMPTY} under s3://{bucket}/data/ at http"
    ), line
    assert "is the feed down?" in line
    assert tree_hashes(lake) == before_lake
    assert warehouse_state(url) == before_wh
    assert not (lake / "raw" / f"source_day={EMPTY}").exists()


def test_backfill_over_an_empty_day_fails_before_fetching(loaded) -> None:
    env, lake, url, _ = loaded
    before_lake, before_wh = tree_hashes(lake), warehouse_state(url)
    result = vdp("run", "--start", LOADED.isoformat(), "--end", EMPTY.isoformat(), env=env)
    assert f"no objects for source day {EMPTY}" in one_error_line(result)
    assert tree_hashes(lake) == before_lake and warehouse_state(url) == before_wh


def test_state_message_and_artifact_say_the_reason(loaded) -> None:
    env, lake, url, bucket = loaded
    state = run_day_state(env, EMPTY)
    assert state.is_failed()
    reason = f"no objects for source day {EMPTY} under s3://{bucket}/data/"
    assert reason in state.message
    summary = run_artifacts(state.state_details.flow_run_id)[f"run-summary-{EMPTY}"]
    assert f"**Status:** failed: {reason}" in summary


@pytest.mark.parametrize("how", ["setting", "flag"])
def test_a_known_empty_day_passes_when_allowed(loaded, how: str) -> None:
    env, lake, url, _ = loaded
    loads = len(audit_rows(url))
    if how == "setting":
        result = vdp(
            "run", "--date", EMPTY.isoformat(), env={**env, "VDP_MIN_OBJECTS_PER_DAY": "0"}
        )
    else:
        result = vdp("run", "--date", EMPTY.isoformat(), "--allow-empty", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{EMPTY}: fetched 0/0 objects" in result.stdout
    audit = audit_rows(url)
    assert len(audit) == loads + 1 and audit[-1][3] == EMPTY  # partition_date of the new load
