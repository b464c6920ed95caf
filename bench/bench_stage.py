"""Benchmark: stage ~1,000,000 generated door2door events (raw JSON -> typed Parquet).

Generates one source day with flows.tools.generate (not timed), copies it into a fresh lake's raw
zone, stages it and prints events, seconds, events/s and peak RSS. Target: >= 300,000
events/s on a 2-core machine.

    python bench/bench_stage.py [--events 1000000] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.lake import Lake  # noqa: E402
from flows.stage import StageSummary, stage_day  # noqa: E402
from flows.tools.generate import generate  # noqa: E402

DAY = dt.date(2019, 6, 1)


def _generate(out: Path, events: int) -> None:
    generate(out, DAY, days=1, orgs=3, vehicles=400, seed=1, quirk_rate=0.01, events_per_day=events)


def make_raw(workdir: Path, events: int, lake: Lake) -> tuple[int, int, int]:
    """Generate ``events`` events (in a child process, so its memory does not count in the
    peak RSS) and link the objects named for DAY into the raw zone.
    Returns (files, bytes, seconds taken to generate)."""
    started = time.perf_counter()
    raw = lake.raw_day(DAY)
    if raw.is_dir():  # a kept --workdir: reuse what an earlier run generated
        files = sorted(raw.iterdir())
        return len(files), sum(p.stat().st_size for p in files), 0
    out = workdir / "generated"
    child = multiprocessing.get_context("fork").Process(target=_generate, args=(out, events))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"generating {events} events failed (exit code {child.exitcode})")
    raw.mkdir(parents=True)
    files = sorted((out / "data").glob(f"{DAY.isoformat()}*"))
    for path in files:
        os.link(path, raw / path.name)
    size = sum(p.stat().st_size for p in files)
    return len(files), size, round(time.perf_counter() - started)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(lake: Lake) -> StageSummary:
    cpu = _cpu_seconds()
    summary = stage_day(lake, DAY)
    cpu = _cpu_seconds() - cpu
    rate = summary.lines / summary.seconds
    print(
        f"staged {summary.lines:,} lines -> {summary.events:,} events "
        f"({summary.duplicates:,} duplicates, {summary.quarantined:,} quarantined) "
        f"in {summary.seconds:.2f} s = {rate:,.0f} lines/s, "
        f"{summary.events / summary.seconds:,.0f} events/s; "
        f"cpu {cpu:.2f} s; load average {os.getloadavg()[0]:.2f}"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="stage the same day N times")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-stage-"))
    try:
        lake = Lake(workdir / "lake")
        files, size, gen_s = make_raw(workdir, args.events, lake)
        print(f"generated {files} files, {size / 1e6:.0f} MB in {gen_s} s (not timed)")
        best = min((run_once(lake) for _ in range(args.repeat)), key=lambda s: s.seconds)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"best: events={best.events} lines={best.lines} seconds={best.seconds:.2f} "
            f"events_per_s={best.events / best.seconds:.0f} "
            f"bytes_per_line={size / best.lines:.0f} peak_rss_mb={peak_mb:.0f}"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
