"""The data quality gate in the daily pipeline: source data that breaks a critical expectation
fails the run with a message naming it and leaves the warehouse, load_audit and the lake's
curated tables exactly as before; a warning-level breach lets the run through and shows in
the run's markdown artifact.

A duplicated key cannot be produced through input: the stage deduplicates events and the
transform derives one row per key, so the uniqueness expectations are covered by the unit
tests of flows/validate.py on hand-built frames."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support_pipeline import (
    clone_database,
    database,
    drop_database,
    new_bucket,
    pipeline_env,
    run_artifacts,
    run_day_state,
    tree_hashes,
    upload,
    warehouse_state,
)

D1, D2 = dt.date(2019, 6, 1), dt.date(2019, 6, 2)
ORG = "org-gate"
BERLIN = (52.52, 13.405)
SYDNEY = (-33.8688, 151.2093)


def _at(day: dt.date, hh: int, mm: int, ss: int = 0) -> str:
    return f"{day.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}.000Z"


def create(pid: str, at: str, start: str, finish: str) -> str:
    data = {"id": pid, "start": start, "finish": finish}
    return json.dumps(
        {
            "event": "create",
            "on": "operating_period",
            "at": at,
            "data": data,
            "organization_id": ORG,
        }
    )


def update(vehicle: str, at: str, lat: float, lng: float) -> str:
    data = {"id": vehicle, "location": {"lat": lat, "lng": lng, "at": at}}
    return json.dumps(
        {"event": "update", "on": "vehicle", "at": at, "data": data, "organization_id": ORG}
    )


def drive(vehicle: str, day: dt.date, hour: int, minutes: range, lat0: float) -> list[str]:
    """A vehicle creeping north through Berlin, one fix a minute (about 550 m a minute)."""
    return [
        update(vehicle, _at(day, hour, m), lat0 + 0.005 * i, 13.40) for i, m in enumerate(minutes)
    ]


def obj(day: dt.date, lines: list[str], n: int = 0) -> dict[str, bytes]:
    """One source object named for ``day`` (names run 3 h behind the events' clock)."""
    return {f"data/{day.isoformat()}-15-0-{n}-events.json": ("\n".join(lines) + "\n").encode()}


def base_day() -> dict[str, bytes]:
    """A clean day: one 30-minute period with two vehicles driving through it."""
    lines = [create("op-base", _at(D1, 17, 59), _at(D1, 18, 0), _at(D1, 18, 30))]
    lines += drive("v1", D1, 18, range(1, 29, 3), 52.50) + drive(
        "v2", D1, 18, range(2, 29, 3), 52.45
    )
    return obj(D1, lines)


@dataclass
class Baseline:
    lake: Path
    url: str
    bucket: str


@pytest.fixture(scope="module")
def baseline(
    prefect_backend, moto_endpoint: str, pg_server_url: str, tmp_path_factory
) -> Iterator[Baseline]:
    """The clean day loaded once; every scenario starts from a copy of its lake and database."""
    bucket = new_bucket(moto_endpoint)
    upload(moto_endpoint, bucket, base_day())
    lake = tmp_path_factory.mktemp("gate-base") / "lake"
    with database(pg_server_url) as url:
        state = run_day_state(pipeline_env(f"s3://{bucket}/data/", lake, url, moto_endpoint), D1)
        assert state.is_completed(), state.message
        yield Baseline(lake, url, bucket)


@dataclass
class Scenario:
    lake: Path
    url: str
    env: dict[str, str]

    def run(self, day: dt.date):
        return run_day_state(self.env, day)

    def state(self) -> tuple[dict, dict]:
        return warehouse_state(self.url), tree_hashes(self.lake / "curated")


@pytest.fixture
def scenario(
    baseline: Baseline, moto_endpoint: str, pg_server_url: str, tmp_path: Path
) -> Iterator[Scenario]:
    """A copy of the baseline whose bucket also holds the clean day (already fetched)."""
    lake = tmp_path / "lake"
    shutil.copytree(baseline.lake, lake, symlinks=True)
    bucket = new_bucket(moto_endpoint)
    upload(moto_endpoint, bucket, base_day())
    url = clone_database(pg_server_url, baseline.url)
    try:
        yield Scenario(lake, url, pipeline_env(f"s3://{bucket}/data/", lake, url, moto_endpoint))
    finally:
        drop_database(url, pg_server_url)


def _bucket(env: dict[str, str]) -> str:
    return env["VDP_SOURCE_URL"].removeprefix("s3://").split("/")[0]


def assert_gate_stops(scenario: Scenario, moto_endpoint: str, lines: list[str], label: str):
    """The bad day fails validation naming ``label``; nothing downstream changed."""
    before = scenario.state()
    upload(moto_endpoint, _bucket(scenario.env), obj(D2, lines))
    state = scenario.run(D2)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert type(error).__name__ == "ValidationFailed"
    assert str(error).startswith("validation failed: ") and label in str(error)
    assert scenario.state() == before
    assert list((scenario.lake / "_journal").glob("*.json")) == []
    return state


def test_period_finishing_before_it_starts_stops_the_run(
    scenario: Scenario, moto_endpoint: str
) -> None:
    lines = [create("op-backwards", _at(D2, 17, 50), _at(D2, 18, 30), _at(D2, 18, 0))]
    lines += drive("v1", D2, 18, range(5, 25, 5), 52.50)
    label = "fact_operating_period.expect_column_pair_values_a_to_be_greater_than_b"
    state = assert_gate_stops(scenario, moto_endpoint, lines, f"{label}(finish_at > start_at)")
    artifacts = run_artifacts(state.state_details.flow_run_id)
    summary, markdown = artifacts["run-summary-2019-06-02"], artifacts["validation-2019-06-02"]
    assert "| validate | outcome | FAILED" in summary and "# Data validation" not in summary
    assert "**Every expectation:** artifact `validation-2019-06-02`" in summary
    assert "# Data validation FAILED" in markdown
    suite, expectation = label.split(".")
    row = f"| {suite} | {expectation} | finish_at > start_at | critical | FAIL | 1 |"
    assert row in markdown


def test_vehicle_jumping_across_the_globe_stops_the_run(
    scenario: Scenario, moto_endpoint: str
) -> None:
    """Two valid points 16,000 km apart inside a five-minute period: ~190,000 km/h."""
    lines = [create("op-jump", _at(D2, 17, 55), _at(D2, 18, 0), _at(D2, 18, 5))]
    lines += [
        update("v1", _at(D2, 18, 1), *BERLIN),
        update("v1", _at(D2, 18, 3), *SYDNEY),
        update("v2", _at(D2, 18, 2), 52.50, 13.40),
        update("v2", _at(D2, 18, 4), 52.51, 13.40),
    ]
    label = "fact_vehicle_operating_period.expect_column_values_to_be_between(avg_speed_kmh)"
    assert_gate_stops(scenario, moto_endpoint, lines, f"{label}: 1 unexpected")


def test_warning_level_breach_loads_and_shows_in_the_run_artifact(
    scenario: Scenario, moto_endpoint: str
) -> None:
    """A 30-hour period is suspicious (warning), not wrong: the run loads it and says so."""
    lines = [create("op-long", _at(D2, 9, 50), _at(D2, 10, 0), "2019-06-03T16:00:00.000Z")]
    lines += drive("v1", D2, 12, range(0, 30, 5), 52.50)
    upload(moto_endpoint, _bucket(scenario.env), obj(D2, lines))
    state = scenario.run(D2)
    assert state.is_completed(), state.message
    summary = state.result()
    validation = summary["validation"]
    assert validation["success"] is True and validation["critical_failures"] == []
    assert validation["warnings"] == [
        "fact_operating_period.expect_column_values_to_be_between(period_hours)"
    ]
    artifacts = run_artifacts(state.state_details.flow_run_id)
    summary, markdown = artifacts["run-summary-2019-06-02"], artifacts["validation-2019-06-02"]
    assert "| validate | outcome | passed, 1 warning(s) |" in summary
    row = "| expect_column_values_to_be_between | period_hours | warning | FAIL | 1 |"
    assert f"| fact_operating_period {row}" in markdown and row not in summary
    _assert_links_the_data_docs(summary, validation["docs_pages"])
    answer, _ = scenario.state()
    loaded = dict(answer["avg_distance_per_operating_period"])
    assert loaded["op-long"]["vehicles"] == 1 and loaded["op-base"]["vehicles"] == 2


def _assert_links_the_data_docs(summary: str, pages: dict[str, str]) -> None:
    """The summary links each suite's Data Docs page of this run, and each page exists."""
    assert "fact_operating_period" in pages
    for suite, url in pages.items():
        assert url.startswith("file://") and url.endswith(".html")
        assert Path(url.removeprefix("file://")).is_file(), url
        assert f"[{suite}]({url})" in summary
