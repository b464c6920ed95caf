"""The data quality gate on real GX 1.x runs over tiny Parquet written with polars: clean data
passes, each critical breach fails with its expectation and count, warnings do not stop a run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from prefect.logging import disable_run_logger

from flows.lake import Lake
from flows.validate import (
    DEFAULT_SUITES_DIR,
    SuiteError,
    ValidationFailed,
    ValidationInputError,
    ValidationReport,
    build_data_docs,
    docs_index,
    raise_for_critical,
    validate_data,
    validate_run,
    validation_markdown,
)

UTC = dt.UTC
T0 = dt.datetime(2019, 6, 1, 18, 17, tzinfo=UTC)
DAY = dt.date(2019, 6, 1)
SUITES = ("events", "fact_operating_period", "fact_break", "fact_vehicle_operating_period")
CURATED = SUITES[1:]


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def events_frame() -> pl.DataFrame:
    """Six staged events of one source day: a period create, a register, three updates (one
    with a GPS glitch flagged invalid) and a period delete."""
    rows = [
        ("create", "operating_period", 0.0, "op_1", None, None, None, 0.0, 5.0, False),
        ("register", "vehicle", 0.1, "veh_a", None, None, None, None, None, False),
        ("update", "vehicle", 1.0, "veh_a", 52.45, 13.46, 1.0, None, None, True),
        ("update", "vehicle", 2.0, "veh_a", 52.46, 13.47, 2.0, None, None, True),
        ("update", "vehicle", 3.0, "veh_b", 0.0, 0.0, 3.0, None, None, False),
        ("delete", "operating_period", 9.0, "op_2", None, None, None, None, None, False),
    ]
    ts = lambda m: None if m is None else minutes(m)  # noqa: E731
    return pl.DataFrame(
        {
            "event_id": [f"{i:032x}" for i in range(len(rows))],
            "event": [r[0] for r in rows],
            "on": [r[1] for r in rows],
            "at": [ts(r[2]) for r in rows],
            "entity_id": [r[3] for r in rows],
            "organization_id": ["org-id"] * len(rows),
            "lat": [r[4] for r in rows],
            "lng": [r[5] for r in rows],
            "location_at": [ts(r[6]) for r in rows],
            "period_start": [ts(r[7]) for r in rows],
            "period_finish": [ts(r[8]) for r in rows],
            "break_vehicle_id": [None] * len(rows),
            "is_valid_point": [r[9] for r in rows],
            "source_key": ["2019-06-01-15-17-4-events.json"] * len(rows),
            "line_number": list(range(1, len(rows) + 1)),
            "ingested_at": [minutes(60)] * len(rows),
            "event_date": [DAY] * len(rows),
            "source_day": [DAY] * len(rows),
        },
        schema_overrides={"lat": pl.Float64, "lng": pl.Float64, "break_vehicle_id": pl.String},
    )


def periods_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "operating_period_id": ["op_1", "op_2"],
            "organization_id": ["org-id", "org-id"],
            "start_at": [minutes(0), minutes(10)],
            "finish_at": [minutes(5), minutes(15)],
            "is_deleted": [False, True],
            "created_at": [minutes(0), minutes(8)],
            "updated_at": [minutes(0), minutes(9)],
        }
    )


def breaks_frame() -> pl.DataFrame:
    """A live break of veh_a inside op_1 and a deleted one that overlaps no period."""
    return pl.DataFrame(
        {
            "break_id": ["br_1", "br_2"],
            "vehicle_id": ["veh_a", "veh_b"],
            "organization_id": ["org-id", "org-id"],
            "start_at": [minutes(1.5), minutes(20)],
            "finish_at": [minutes(2.5), minutes(21)],
            "is_deleted": [False, True],
            "created_at": [minutes(1), minutes(19)],
            "updated_at": [minutes(1), minutes(22)],
        }
    )


def vehicles_frame() -> pl.DataFrame:
    """Two vehicles in op_1 (one with a single point) and one in op_2; ~2 km in 5 minutes."""
    return pl.DataFrame(
        {
            "operating_period_id": ["op_1", "op_1", "op_2"],
            "vehicle_id": ["veh_a", "veh_b", "veh_a"],
            "organization_id": ["org-id"] * 3,
            "distance_km": [1.32, 0.0, 2.0],
            "location_points": [2, 1, 3],
            "first_location_at": [minutes(1), minutes(3), minutes(11)],
            "last_location_at": [minutes(2), minutes(3), minutes(14)],
        }
    )


Frames = dict[str, pl.DataFrame]


def write_run(tmp_path: Path, frames: Frames) -> tuple[list[Path], Path]:
    """Write events as one staged partition and the facts in the curated layout."""
    partition = tmp_path / "staged" / "date=2019-06-01" / "source_day=2019-06-01"
    partition.mkdir(parents=True)
    frames["events"].write_parquet(partition / "part-0.parquet")
    curated = tmp_path / "curated"
    for table in CURATED:
        (curated / table).mkdir(parents=True)
        frames[table].write_parquet(curated / table / "part-0.parquet")
    return [partition], curated


def clean_frames() -> Frames:
    return {
        "events": events_frame(),
        "fact_operating_period": periods_frame(),
        "fact_break": breaks_frame(),
        "fact_vehicle_operating_period": vehicles_frame(),
    }


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """One lake for the module: a GX file context is set up once, as in production where every
    run of a lake shares it; each test validates under its own run id."""
    return Lake(tmp_path_factory.mktemp("shared") / "lake")


def run(tmp_path: Path, frames: Frames, lake: Lake | None = None, **kwargs) -> ValidationReport:
    paths, curated = write_run(tmp_path, frames)
    args = {"run_id": f"run-{tmp_path.name}", "fetched_objects": 1, **kwargs}
    lake = lake or Lake(tmp_path / "lake")
    return validate_run(lake, events_paths=paths, curated_dir=curated, **args)


def set_row(table: str, column: str, row: int, value: object) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        df = frames[table]
        values = df[column].to_list()
        values[row] = value
        frames[table] = df.with_columns(pl.Series(column, values, dtype=df.schema[column]))

    return mutate


def duplicate_row(table: str, row: int) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table] = pl.concat([frames[table], frames[table][row]])

    return mutate


def test_clean_run_passes_every_suite_and_writes_results(tmp_path: Path) -> None:
    report = run(tmp_path, clean_frames(), run_id="run-1")
    assert report.success, report.summary_line()
    assert [r.label() for r in report.results if not r.success] == []
    assert {r.suite for r in report.results} == set(SUITES)
    assert len(report.results) == 28 + 14 + 11 + 15
    assert report.summary_line() == "validation passed: 68 expectations"
    by_label = {r.label(): r for r in report.results}
    assert by_label["events.expect_column_values_to_not_be_null(at)"].element_count == 6
    assert report.json_path == tmp_path / "lake" / "validation" / "runs" / "run-1.json"
    saved = json.loads(report.json_path.read_text())
    assert saved["success"] is True and len(saved["results"]) == 68
    assert docs_index(Lake(tmp_path / "lake")).is_file()
    raise_for_critical(report)


CRITICAL_BREACHES = [
    pytest.param(
        set_row("fact_operating_period", "finish_at", 0, minutes(-1)),
        "fact_operating_period.expect_column_pair_values_a_to_be_greater_than_b"
        "(finish_at > start_at): 1 unexpected",
        id="finish-before-start",
    ),
    pytest.param(
        set_row("fact_break", "finish_at", 0, minutes(1)),
        "fact_break.expect_column_pair_values_a_to_be_greater_than_b"
        "(finish_at >= start_at): 1 unexpected",
        id="break-finishes-before-it-starts",
    ),
    pytest.param(
        duplicate_row("fact_operating_period", 1),
        "fact_operating_period.expect_column_values_to_be_unique(operating_period_id)"
        ": 2 unexpected",
        id="duplicate-period-id",
    ),
    pytest.param(
        duplicate_row("fact_vehicle_operating_period", 0),
        "fact_vehicle_operating_period.expect_compound_columns_to_be_unique"
        "(operating_period_id, vehicle_id): 2 unexpected",
        id="duplicate-period-vehicle",
    ),
    pytest.param(
        set_row("fact_vehicle_operating_period", "distance_km", 2, -0.5),
        "fact_vehicle_operating_period.expect_column_values_to_be_between(distance_km)"
        ": 1 unexpected",
        id="negative-distance",
    ),
    pytest.param(
        set_row("fact_vehicle_operating_period", "distance_km", 0, 10_000.0),
        "fact_vehicle_operating_period.expect_column_values_to_be_between(avg_speed_kmh)"
        ": 1 unexpected",
        id="10000-km-in-five-minutes",
    ),
    pytest.param(
        set_row("events", "at", 3, None),
        "events.expect_column_values_to_not_be_null(at): 1 unexpected",
        id="null-at",
    ),
    pytest.param(
        set_row("events", "lat", 2, 95.0),
        "events.expect_column_values_to_be_between(lat where is_valid_point == True): 1 unexpected",
        id="valid-point-off-the-globe",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), CRITICAL_BREACHES)
def test_critical_breach_fails_the_run_naming_expectation_and_count(
    tmp_path: Path, shared_lake: Lake, mutate: Callable[[Frames], None], expected: str
) -> None:
    frames = clean_frames()
    mutate(frames)
    report = run(tmp_path, frames, shared_lake)
    assert not report.success
    assert report.summary_line() == f"validation failed: {expected}"
    with pytest.raises(ValidationFailed, match="validation failed") as failure:
        raise_for_critical(report)
    assert failure.value.report is report


def test_warning_is_reported_and_the_run_continues(tmp_path: Path, shared_lake: Lake) -> None:
    """A 30-hour period is unusual, not wrong: the run passes and says so."""
    frames = clean_frames()
    set_row("fact_operating_period", "finish_at", 1, minutes(10 + 30 * 60))(frames)
    report = run(tmp_path, frames, shared_lake)
    assert report.success and report.critical_failures == []
    assert [(w.label(), w.unexpected_count) for w in report.warnings] == [
        ("fact_operating_period.expect_column_values_to_be_between(period_hours)", 1)
    ]
    assert report.summary_line().startswith("validation passed with 1 warning(s)")
    markdown = validation_markdown(report)
    assert (
        "| fact_operating_period | expect_column_values_to_be_between | period_hours " in markdown
    )
    assert "| warning | FAIL | 1 | 2 |" in markdown


@pytest.mark.parametrize(
    ("column", "value", "columns"),
    [
        ("finish_at", minutes(1.5 + 5 * 60), "break_hours"),  # a 5-hour break
        ("is_deleted", False, "overlaps_period where is_deleted == False"),  # br_2 made live
    ],
    ids=["longer-than-4-hours", "live-break-outside-every-period"],
)
def test_unusual_breaks_are_warnings(
    tmp_path: Path, shared_lake: Lake, column: str, value: object, columns: str
) -> None:
    frames = clean_frames()
    set_row("fact_break", column, 0 if column == "finish_at" else 1, value)(frames)
    report = run(tmp_path, frames, shared_lake)
    assert report.success and report.critical_failures == []
    assert [(w.suite, w.columns, w.unexpected_count) for w in report.warnings] == [
        ("fact_break", columns, 1)
    ]


def _overlaps_by_definition(breaks: pl.DataFrame, periods: pl.DataFrame) -> dict[str, bool]:
    """A break overlaps when some live period of its organization starts by its finish and
    finishes at or after its start: every break against every period, in plain Python."""
    live = [p for p in periods.iter_rows(named=True) if not p["is_deleted"]]
    return {
        b["break_id"]: any(
            p["organization_id"] == b["organization_id"]
            and None not in (p["start_at"], p["finish_at"], b["start_at"], b["finish_at"])
            and p["start_at"] <= b["finish_at"]
            and p["finish_at"] >= b["start_at"]
            for p in live
        )
        for b in breaks.iter_rows(named=True)
    }


@pytest.mark.parametrize("seed", range(5))
def test_overlaps_period_agrees_with_its_definition(seed: int) -> None:
    """The as-of join gives each break the answer of the definition, on random periods and
    breaks of three organizations on a coarse clock (so bounds often touch), with deleted
    periods, nested and disjoint periods, and missing bounds."""
    import random

    from flows.validate_frames import with_break_checks

    rng = random.Random(seed)
    t0 = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)

    def bounds(n: int) -> tuple[list, list]:
        starts = [rng.randrange(0, 40) for _ in range(n)]
        ends = [s + rng.randrange(0, 12) for s in starts]
        cut = lambda v: None if rng.random() < 0.05 else t0 + dt.timedelta(minutes=5 * v)  # noqa: E731
        return [cut(v) for v in starts], [cut(v) for v in ends]

    p_start, p_finish = bounds(60)
    periods = pl.DataFrame(
        {
            "operating_period_id": [f"op_{i}" for i in range(60)],
            "organization_id": [rng.choice("abc") for _ in range(60)],
            "start_at": p_start,
            "finish_at": p_finish,
            "is_deleted": [rng.random() < 0.2 for _ in range(60)],
        },
        schema_overrides={
            "start_at": pl.Datetime("us", "UTC"),
            "finish_at": pl.Datetime("us", "UTC"),
        },
    )
    b_start, b_finish = bounds(200)
    breaks = pl.DataFrame(
        {
            "break_id": [f"br_{i}" for i in range(200)],
            "organization_id": [rng.choice("abcd") for _ in range(200)],
            "start_at": b_start,
            "finish_at": b_finish,
        },
        schema_overrides={
            "start_at": pl.Datetime("us", "UTC"),
            "finish_at": pl.Datetime("us", "UTC"),
        },
    )
    got = with_break_checks(breaks, periods)
    assert got["break_id"].to_list() == breaks["break_id"].to_list()  # order and rows kept
    answer = dict(zip(got["break_id"], got["overlaps_period"], strict=True))
    want = _overlaps_by_definition(breaks, periods)
    assert answer == want
    assert 0 < sum(want.values()) < len(want)  # both outcomes occur


def test_suspect_speed_is_a_warning_not_a_failure(tmp_path: Path, shared_lake: Lake) -> None:
    """30 km in five minutes (360 km/h) is suspect but under the 1000 km/h ceiling."""
    frames = clean_frames()
    set_row("fact_vehicle_operating_period", "distance_km", 0, 30.0)(frames)
    report = run(tmp_path, frames, shared_lake)
    assert report.success
    assert [w.columns for w in report.warnings] == ["avg_speed_kmh"]


def test_row_count_check_only_applies_when_objects_were_fetched(
    tmp_path: Path, shared_lake: Lake
) -> None:
    frames = clean_frames()
    frames["events"] = frames["events"].clear()
    fetched = run(tmp_path / "a", frames, shared_lake, fetched_objects=3)
    assert fetched.success
    assert [w.label() for w in fetched.warnings] == [
        "events.expect_table_row_count_to_be_between(table)"
    ]
    assert fetched.warnings[0].detail() == "observed 0"
    nothing_fetched = run(tmp_path / "b", frames, shared_lake, fetched_objects=0)
    assert nothing_fetched.success and nothing_fetched.warnings == []
    assert len(nothing_fetched.results) == 67


def test_no_events_partition_validates_an_empty_frame(tmp_path: Path, shared_lake: Lake) -> None:
    _, curated = write_run(tmp_path, clean_frames())
    report = validate_run(
        shared_lake, run_id="empty", events_paths=[], curated_dir=curated, fetched_objects=0
    )
    assert report.success and report.warnings == []


def test_suites_load_from_a_directory(tmp_path: Path, shared_lake: Lake) -> None:
    """Tightening the speed ceiling in a copy of the suites turns clean data into a failure."""
    suites = tmp_path / "suites"
    shutil.copytree(DEFAULT_SUITES_DIR, suites)
    path = suites / "fact_vehicle_operating_period.json"
    spec = json.loads(path.read_text())
    ceiling = next(
        e
        for e in spec["expectations"]
        if e["kwargs"].get("column") == "avg_speed_kmh" and e["meta"]["severity"] == "critical"
    )
    ceiling["kwargs"]["max_value"] = 10
    path.write_text(json.dumps(spec))
    report = run(tmp_path, clean_frames(), shared_lake, suites_dir=suites)
    assert report.summary_line() == (
        "validation failed: fact_vehicle_operating_period.expect_column_values_to_be_between"
        "(avg_speed_kmh): 2 unexpected"
    )


def test_suite_without_severity_is_rejected(tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    shutil.copytree(DEFAULT_SUITES_DIR, suites)
    spec = json.loads((suites / "events.json").read_text())
    del spec["expectations"][0]["meta"]["severity"]
    (suites / "events.json").write_text(json.dumps(spec))
    with pytest.raises(SuiteError, match=r"events.json expectation #0 .* needs meta.severity"):
        run(tmp_path, clean_frames(), suites_dir=suites)


def test_missing_curated_table_names_it(tmp_path: Path) -> None:
    paths, curated = write_run(tmp_path, clean_frames())
    shutil.rmtree(curated / "fact_vehicle_operating_period")
    with pytest.raises(ValidationInputError, match="fact_vehicle_operating_period not found"):
        validate_run(
            Lake(tmp_path / "lake"),
            run_id="r",
            events_paths=paths,
            curated_dir=curated,
            fetched_objects=1,
        )


def test_markdown_lists_every_suite_with_pass_and_fail(tmp_path: Path, shared_lake: Lake) -> None:
    frames = clean_frames()
    duplicate_row("fact_operating_period", 0)(frames)
    report = run(tmp_path, frames, shared_lake, run_id="md-run")
    markdown = validation_markdown(report)
    assert markdown.startswith("# Data validation FAILED: run md-run")
    for suite in SUITES:
        assert f"| {suite} | expect_table_columns_to_match_set | table | critical | pass |" in (
            markdown
        )
    row = "| fact_operating_period | expect_column_values_to_be_unique | operating_period_id "
    assert f"{row}| critical | FAIL | 2 | 3 |" in markdown
    assert markdown.count("\n| ") == 2 + 68


def test_task_raises_on_critical_and_docs_keep_history(tmp_path: Path) -> None:
    """Two runs in one lake: the second fails through the Prefect task; docs show both."""
    lake = Lake(tmp_path / "lake")
    paths, curated = write_run(tmp_path / "good", clean_frames())
    frames = clean_frames()
    set_row("events", "at", 0, None)(frames)
    bad_paths, bad_curated = write_run(tmp_path / "bad", frames)
    with disable_run_logger():
        good = validate_data.fn(lake, "run-good", paths, curated, 1)
        with pytest.raises(ValidationFailed, match=r"not_be_null\(at\): 1 unexpected"):
            validate_data.fn(lake, "run-bad", bad_paths, bad_curated, 1)
    assert good.success
    assert (
        json.loads((lake.validation_dir / "runs" / "run-bad.json").read_text())["success"] is False
    )
    index = build_data_docs(lake)
    assert index == lake.validation_dir / "docs" / "index.html"
    html = index.read_text()
    assert "run-good" in html and "run-bad" in html


def test_period_ids_limit_curated_checks_to_recomputed_periods(
    tmp_path: Path, shared_lake: Lake
) -> None:
    """Untouched periods passed when published; a duplicate of a recomputed id still shows."""
    frames = clean_frames()
    duplicate_row("fact_operating_period", 1)(frames)
    untouched = run(tmp_path / "a", frames, shared_lake, period_ids=["op_1"])
    assert untouched.success, untouched.summary_line()
    by_label = {r.label(): r for r in untouched.results}
    unique = by_label[
        "fact_operating_period.expect_column_values_to_be_unique(operating_period_id)"
    ]
    assert unique.element_count == 1
    recomputed = run(tmp_path / "b", frames, shared_lake, period_ids=["op_2"])
    assert recomputed.summary_line() == (
        "validation failed: fact_operating_period.expect_column_values_to_be_unique"
        "(operating_period_id): 2 unexpected"
    )


def test_event_redelivered_in_another_source_day_is_legal(
    tmp_path: Path, shared_lake: Lake
) -> None:
    """A backfill validates several source days: the same event_id in two of them is a
    re-delivery (the events view keeps one), the same event_id twice in one day is not."""
    frames = clean_frames()
    other_day = frames["events"][0].with_columns(source_day=pl.lit(DAY + dt.timedelta(days=1)))
    frames["events"] = pl.concat([frames["events"], other_day])
    assert run(tmp_path / "a", frames, shared_lake).success
    duplicate_row("events", 0)(frames)
    report = run(tmp_path / "b", frames, shared_lake)
    assert report.summary_line() == (
        "validation failed: events.expect_compound_columns_to_be_unique"
        "(source_day, event_id): 2 unexpected"
    )
