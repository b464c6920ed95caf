"""Time the data quality gate on 1,000,000 synthetic staged events plus curated facts.

Usage: python bench/bench_validate.py [--events 1000000] [--periods 20000]
Prints the GX import time, the time to build the frames and the time of validate_run
(cold: first run in a fresh lake; warm: a second run in the same lake).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from flows.lake import Lake
from flows.validate import DEFAULT_SUITES_DIR, load_suites, validate_run
from flows.validate_frames import build_frames

T0 = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)


def _utc(offsets_us: np.ndarray) -> pl.Series:
    """UTC timestamps at the given microsecond offsets from T0."""
    base = np.datetime64(T0.replace(tzinfo=None), "us")
    return pl.Series(base + offsets_us.astype("timedelta64[us]")).dt.replace_time_zone("UTC")


def synth_events(n: int, seed: int = 7) -> pl.DataFrame:
    """n staged events of one source day: 2% period events, the rest vehicle events."""
    rng = np.random.default_rng(seed)
    is_period = rng.random(n) < 0.02
    kind = rng.random(n)
    vehicle_event = np.where(kind < 0.01, "register", np.where(kind < 0.02, "deregister", "update"))
    event = np.where(is_period, np.where(kind < 0.8, "create", "delete"), vehicle_event)
    at = _utc(rng.integers(0, 86_400_000_000, n))
    is_update = event == "update"
    lat = np.where(is_update, rng.uniform(52.3, 52.7, n), np.nan)
    glitch = is_update & (rng.random(n) < 0.001)
    lat = np.where(glitch, 0.0, lat)
    lng = np.where(is_update, np.where(glitch, 0.0, rng.uniform(13.1, 13.7, n)), np.nan)
    is_create = event == "create"
    return pl.DataFrame(
        {
            "event_id": pl.Series(np.arange(n)).cast(pl.String).str.zfill(32),
            "event": event,
            "on": np.where(is_period, "operating_period", "vehicle"),
            "at": at,
            "entity_id": np.where(
                is_period,
                np.char.add("op_", rng.integers(0, 20_000, n).astype(str)),
                np.char.add("veh_", rng.integers(0, 2_000, n).astype(str)),
            ),
            "organization_id": "org-id",
            "lat": lat,
            "lng": lng,
            "location_at": at,
            "period_start": at,
            "period_finish": at + dt.timedelta(minutes=5),
            "is_valid_point": is_update & ~glitch,
            "source_key": "2019-06-01-15-17-4-events.json",
            "line_number": np.arange(1, n + 1),
            "ingested_at": T0 + dt.timedelta(days=1),
            "event_date": T0.date(),
            "source_day": T0.date(),
        }
    ).with_columns(
        pl.col("lat", "lng").fill_nan(None),
        location_at=pl.when(pl.lit(pl.Series(is_update))).then("location_at"),
        period_start=pl.when(pl.lit(pl.Series(is_create))).then("period_start"),
        period_finish=pl.when(pl.lit(pl.Series(is_create))).then("period_finish"),
    )


def _spans(
    rng: np.random.Generator, ids: dict[str, list], start: pl.Series, length: dt.timedelta
) -> pl.DataFrame:
    """Periods or breaks of one organization: ids, bounds, one in ten deleted."""
    return pl.DataFrame(
        {
            **ids,
            "organization_id": "org-id",
            "start_at": start,
            "finish_at": start + length,
            "is_deleted": rng.random(len(start)) < 0.1,
            "created_at": start,
            "updated_at": start,
        }
    )


def synth_curated(periods: int, seed: int = 7) -> dict[str, pl.DataFrame]:
    """periods five-minute periods with five vehicles each, up to ~10 km per vehicle, and a
    driver's break in one period in ten."""
    rng = np.random.default_rng(seed)
    start = _utc(rng.integers(0, 86_000, periods) * 1_000_000)
    ids = [f"op_{i}" for i in range(periods)]
    fact_periods = _spans(rng, {"operating_period_id": ids}, start, dt.timedelta(minutes=5))
    per = 5
    vehicles = pl.DataFrame(
        {
            "operating_period_id": np.repeat(ids, per),
            "vehicle_id": np.tile([f"veh_{i}" for i in range(per)], periods),
            "organization_id": "org-id",
            "distance_km": rng.uniform(0, 10, periods * per),
            "location_points": rng.integers(1, 30, periods * per),
            "first_location_at": np.repeat(start.to_numpy(), per),
            "last_location_at": np.repeat(start.to_numpy(), per),
        }
    ).with_columns(pl.col("first_location_at", "last_location_at").dt.replace_time_zone("UTC"))
    breaks = periods // 10  # a 15-minute break inside one period in ten, one vehicle each
    break_start = start[:breaks] + dt.timedelta(minutes=1)
    fact_breaks = _spans(
        rng,
        {
            "break_id": [f"br_{i}" for i in range(breaks)],
            "vehicle_id": [f"veh_{i % per}" for i in range(breaks)],
        },
        break_start,
        dt.timedelta(minutes=15),
    )
    return {
        "fact_operating_period": fact_periods,
        "fact_vehicle_operating_period": vehicles,
        "fact_break": fact_breaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--periods", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        root = Path(tmp)
        partition = root / "events" / "date=2019-06-01" / "source_day=2019-06-01"
        partition.mkdir(parents=True)
        synth_events(args.events).write_parquet(partition / "part-0.parquet")
        for table, frame in synth_curated(args.periods).items():
            (root / "curated" / table).mkdir(parents=True)
            frame.write_parquet(root / "curated" / table / "part-0.parquet")
        started = time.perf_counter()
        import great_expectations  # noqa: F401

        print(f"import great_expectations: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        frames = build_frames(list(load_suites(DEFAULT_SUITES_DIR)), [partition], root / "curated")
        rows = {name: frame.height for name, frame in frames.items()}
        print(f"read + derive frames {rows}: {time.perf_counter() - started:.2f} s")
        lake = Lake(root / "lake")
        for label in ("cold (fresh lake)", "warm (second run)"):
            cpu_started = time.process_time()
            report = validate_run(
                lake,
                run_id=f"bench-{label.split()[0]}",
                events_paths=[partition],
                curated_dir=root / "curated",
                fetched_objects=721,
            )
            cpu = time.process_time() - cpu_started
            steps = ", ".join(f"{step} {sec:.2f}" for step, sec in report.timings.items())
            print(f"validate_run {label}: {report.seconds:.2f} s wall, {cpu:.2f} s cpu ({steps})")
            print(f"  {report.summary_line()}")


if __name__ == "__main__":
    main()
