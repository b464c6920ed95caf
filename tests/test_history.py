"""Flat cost: a run reads the events of the dates it touches and the lake's state, never the
rest of history, and gives the tables an all-at-once run gives. Real DuckDB over generated
days staged from a raw zone, published as the flow publishes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support_events import publish
from test_transform import TABLE_KEYS as KEYS

from flows.lake import Lake
from flows.stage import stage_day
from flows.transform import TransformError, transform

START = dt.date(2019, 6, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(5)]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from flows.tools.generate import generate

    out = tmp_path_factory.mktemp("history")
    generate(str(out), START, len(DAYS), orgs=2, vehicles=5, seed=11, events_per_day=4000)
    return out / "data"


def stage_days(lake: Lake, data: Path, days: list[dt.date]) -> None:
    """Copy each day's objects into the raw zone (as the fetch does) and stage them."""
    for day in days:
        raw = lake.raw_day(day)
        raw.mkdir(parents=True, exist_ok=True)
        for path in sorted(data.glob(f"{day.isoformat()}-*")):
            shutil.copyfile(path, raw / path.name)
        stage_day(lake, day)


def curated(lake: Lake) -> dict[str, pl.DataFrame]:
    frames = {}
    for table, key in KEYS.items():
        files = sorted(lake.curated_table(table).rglob("*.parquet"))
        frames[table] = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files])
        frames[table] = frames[table].sort(key)
    return frames


def all_at_once(tmp_path: Path, data: Path) -> dict[str, pl.DataFrame]:
    lake = Lake(tmp_path / "all-at-once")
    stage_days(lake, data, DAYS)
    publish(lake, DAYS)
    return curated(lake)


def make_unreadable(files: list[Path]) -> None:
    """Overwrite files with zeros of the same size and keep their times and inode, so the
    lake's listing is unchanged but any read of them fails (chmod does not stop root)."""
    for path in files:
        info = path.stat()
        with open(path, "r+b") as handle:
            handle.write(b"\0" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_day_reads_no_events_of_dates_it_does_not_touch(tmp_path: Path, generated: Path):
    lake = Lake(tmp_path / "lake")
    stage_days(lake, generated, DAYS)
    for day in DAYS[:-1]:
        publish(lake, [day])
    last = DAYS[-1]
    touched = {Lake.event_date_of(p) for p in lake.events_partitions_of(last)}
    history = [
        f
        for files in lake.staged_files().values()
        for f in files
        if Lake.event_date_of(f.parent) not in touched
    ]
    assert len(history) >= 6  # most of the lake is history this run must not read
    make_unreadable(history)

    result = publish(lake, [last])

    assert result.source_days == [last] and set(result.event_dates) == touched
    want = all_at_once(tmp_path, generated)
    got = curated(lake)
    for table in KEYS:
        assert_frame_equal(got[table], want[table], check_exact=True)
    # the zeroed files would have been noticed: a rebuild that reads everything fails on them
    shutil.rmtree(lake.state_dir)
    with pytest.raises(TransformError, match="building curated tables"):
        transform(lake, [last], tmp_path / "rebuild")


def test_a_day_staged_again_with_fewer_events_removes_them_everywhere(
    tmp_path: Path, generated: Path
):
    """Re-staging replaces a day's rows: the state must forget what the day no longer has."""
    lake = Lake(tmp_path / "lake")
    stage_days(lake, generated, DAYS[:3])
    for day in DAYS[:3]:
        publish(lake, [day])
    raw = lake.raw_day(DAYS[1])
    dropped = sorted(raw.iterdir())[::2]
    for path in dropped:
        path.unlink()
    stage_day(lake, DAYS[1])
    publish(lake, [DAYS[1]])

    fresh = Lake(tmp_path / "fresh")
    stage_days(fresh, generated, DAYS[:3])
    for path in dropped:
        (fresh.raw_day(DAYS[1]) / path.name).unlink()
    stage_day(fresh, DAYS[1])
    publish(fresh, DAYS[:3])
    got, want = curated(lake), curated(fresh)
    for table in KEYS:
        assert_frame_equal(got[table], want[table], check_exact=True)


def test_a_lake_without_state_is_rebuilt_once_then_runs_incrementally(
    tmp_path: Path, generated: Path, caplog
):
    lake = Lake(tmp_path / "lake")
    stage_days(lake, generated, DAYS[:4])
    for day in DAYS[:3]:
        publish(lake, [day])
    shutil.rmtree(lake.state_dir)  # a lake as the version before the state left it

    with caplog.at_level("WARNING"):
        first = publish(lake, [DAYS[3]])
    assert first.rebuilt and first.source_days == DAYS[:4]
    assert "no incremental state yet" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        second = publish(lake, [DAYS[3]])
    assert not second.rebuilt and second.source_days == [DAYS[3]]
    assert "no incremental state" not in caplog.text
    assert second.recomputed_period_ids != first.recomputed_period_ids  # only its own periods

    fresh = Lake(tmp_path / "fresh")
    stage_days(fresh, generated, DAYS[:4])
    publish(fresh, DAYS[:4])
    got, want = curated(lake), curated(fresh)
    for table in KEYS:
        assert_frame_equal(got[table], want[table], check_exact=True)


def test_a_day_without_data_gives_empty_frames_to_validate(tmp_path: Path, generated: Path):
    from flows.validate_frames import build_frames

    lake = Lake(tmp_path / "lake")
    stage_days(lake, generated, DAYS[:2])
    for day in DAYS[:2]:
        publish(lake, [day])
    empty = DAYS[-1]  # never staged: no objects
    result = transform(lake, [empty], tmp_path / "out")
    assert result.recomputed_period_ids == [] and result.event_dates == []
    names = ["fact_operating_period", "fact_vehicle_operating_period"]
    frames = build_frames(names, [], result.out_dir, result.recomputed_period_ids)
    assert [frames[n].height for n in names] == [0, 0]
