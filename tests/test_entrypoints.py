"""Smoke tests for what operators deploy: every prefect.yaml entrypoint imports and is a flow,
prefect.yaml and `vdp serve` declare the same schedule and limits, and scheduled runs
process the day before their scheduled start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

from flows import deploy

ROOT = Path(__file__).resolve().parents[1]


def _deployments() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


@pytest.mark.parametrize(
    ("deployment", "flow_name"),
    [("daily", "daily-pipeline"), ("backfill", "backfill"), ("reprocess", "reprocess")],
)
def test_entrypoint_imports_as_the_named_flow(deployment: str, flow_name: str) -> None:
    """A typo in an entrypoint only shows when a worker picks a run up at 03:00; catch it here."""
    entrypoint = _deployments()[deployment]["entrypoint"]
    path, _, func = entrypoint.partition(":")
    assert (ROOT / path).is_file(), entrypoint
    loaded = load_flow_from_entrypoint(str(ROOT / path) + ":" + func)
    assert isinstance(loaded, Flow)
    assert loaded.name == flow_name


def test_every_deployment_is_covered_and_on_the_process_pool() -> None:
    deployments = _deployments()
    assert set(deployments) == {"daily", "backfill", "reprocess"}
    for spec in deployments.values():
        assert spec["work_pool"]["name"] == deploy.WORK_POOL == "vdp-process"
        assert spec["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def test_schedules_match_between_prefect_yaml_and_serve() -> None:
    """`vdp serve` must behave like the work-pool deployment: 03:00 UTC daily, backfill manual."""
    deployments = _deployments()
    assert deployments["daily"]["schedules"] == [
        {"cron": "0 3 * * *", "timezone": "UTC", "active": True}
    ]
    served = {d.name: d for d in deploy.served_deployments()}
    daily_schedules = [s.schedule for s in served["daily"].schedules]
    assert [(s.cron, s.timezone) for s in daily_schedules] == [("0 3 * * *", "UTC")]
    for name in ("backfill", "reprocess"):
        assert not deployments[name].get("schedules")
        assert served[name].schedules in (None, [])
    for name in ("daily", "backfill", "reprocess"):
        assert served[name].concurrency_limit == 1
        assert served[name].concurrency_options.collision_strategy.value == "ENQUEUE"
        assert served[name].entrypoint == _deployments()[name]["entrypoint"]


def _schedule_at(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    """Make prefect.runtime.flow_run.scheduled_start_time report ``when`` (as in a flow run
    whose expected start is ``when``); the pipeline reads it through prefect.runtime."""
    from prefect.runtime import flow_run

    monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: when)


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        # the normal case: the 03:00 run of the 2nd processes the 1st
        ("2019-06-02T03:00:00+00:00", dt.date(2019, 6, 1)),
        # a run that starts late, still the same scheduled day
        ("2019-06-02T23:59:59+00:00", dt.date(2019, 6, 1)),
        # scheduled time given in another zone: the UTC day counts (01:30+02:00 = 23:30Z on the 1st)
        ("2019-06-02T01:30:00+02:00", dt.date(2019, 5, 31)),
        # month boundary
        ("2019-07-01T03:00:00+00:00", dt.date(2019, 6, 30)),
    ],
)
def test_processing_day_is_the_day_before_the_scheduled_start(
    monkeypatch: pytest.MonkeyPatch, scheduled: str, expected: dt.date
) -> None:
    from flows.pipeline import processing_day

    _schedule_at(monkeypatch, dt.datetime.fromisoformat(scheduled))
    assert processing_day(None) == expected


def test_processing_day_prefers_an_explicit_date(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import processing_day

    _schedule_at(monkeypatch, dt.datetime(2019, 6, 2, 3, tzinfo=dt.UTC))
    assert processing_day(dt.date(2019, 5, 20)) == dt.date(2019, 5, 20)
