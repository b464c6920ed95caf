"""Benchmark: does a daily run's cost grow with the history the lake holds?

N consecutive generated source days (flows.tools.generate, not timed) are loaded ONE AT A TIME, in
order, into one fresh lake and one fresh PostgreSQL database that the bench creates on
--admin-url and drops at the end. Each day runs daily_pipeline(date=day) in its own fresh
spawned process (so each day's peak RSS is its own) against a temporary Prefect API started
before the clock starts; the source is the generated local directory. One line per day gives
the flow's per-stage times (its summary's timings), the flow process's peak RSS and the
events staged into the lake so far. At the end: the median total time and peak RSS of days
2-4 against the last 3 days, and one extra run for the day after the last, which has no
objects at all (run as a known-empty day, VDP_MIN_OBJECTS_PER_DAY=0).

    python bench/bench_history.py [--days 30] [--events-per-day 250000] [--orgs 4]
        [--vehicles 25] [--seed 1] [--workdir DIR] [--admin-url URL]

With --workdir DIR the generated data is kept and reused by later runs with the same
arguments (the lake and database are always fresh). The flow's logs go to stderr, the
figures to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

from bench_pipeline import (  # noqa: E402
    BenchDatabases,
    add_shared_arguments,
    fresh_lake_env,
    generate_once,
    run_in_workdir,
    run_pipeline,
    source_for,
)

START = dt.date(2019, 6, 1)
STAGES = ("fetch+stage", "transform", "validate", "load", "total")
GOAL = 1.15


# data ---------------------------------------------------------------------------------------
def generated_days(workdir: Path, args: argparse.Namespace) -> Path:
    """The generated data/ directory (generated once per workdir and arguments)."""
    name = (
        f"generated-{args.days}d-{args.events_per_day}-o{args.orgs}-v{args.vehicles}-s{args.seed}"
    )
    out = generate_once(
        workdir / name,
        start=START,
        days=args.days,
        orgs=args.orgs,
        vehicles=args.vehicles,
        seed=args.seed,
        events_per_day=args.events_per_day,
    )
    return out / "data"


# report -------------------------------------------------------------------------------------
def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


HEADER = (
    f"{'day':>4} {'date':<10} {'fetch+st':>9} {'transform':>9} {'validate':>9} {'load':>7} "
    f"{'total':>7} {'RSS MB':>7} {'lake events':>12}"
)


def print_day(n: int, day: dt.date, result: dict, lake_events: int) -> None:
    t = result["timings"]
    print(
        f"{n:>4} {day.isoformat():<10} {t.get('fetch+stage', 0.0):8.2f}s "
        f"{t.get('transform', 0.0):8.2f}s {t.get('validate', 0.0):8.2f}s "
        f"{t.get('load', 0.0):6.2f}s {t['total']:6.2f}s {result['maxrss_self_mb']:7.0f} "
        f"{lake_events:>12,}",
        flush=True,
    )


def print_ratio(what: str, unit: str, values: list[float]) -> None:
    early = statistics.median(values[1:4])
    late = statistics.median(values[-3:])
    print(
        f"  {what:<14} median days 2-4 {early:8.2f} {unit}   last 3 days {late:8.2f} {unit}   "
        f"ratio last/early {late / early:5.3f}"
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {_load()} at start", flush=True)
    data = generated_days(workdir, args)
    days = [START + dt.timedelta(days=i) for i in range(args.days)]
    empty_day = days[-1] + dt.timedelta(days=1)
    files = sorted(data.glob("*.json"))
    size = sum(p.stat().st_size for p in files)
    print(
        f"data: {len(files)} files, {size / 1e6:.0f} MB for source days {days[0]}..{days[-1]} "
        f"({args.events_per_day:,} events/day, {args.orgs} orgs, {args.vehicles} vehicles, "
        f"seed {args.seed}); objects named {empty_day}: "
        f"{len(list(data.glob(f'{empty_day.isoformat()}*')))}",
        flush=True,
    )
    totals: list[float] = []
    rss: list[float] = []
    with BenchDatabases(args.admin_url, workdir) as dbs, source_for(files, s3=False) as source:
        env = fresh_lake_env(source, workdir, dbs.url("history"))
        print("\nper day (seconds from the flow's summary timings; RSS = flow process peak):")
        print(HEADER, flush=True)
        lake_events = 0
        for n, day in enumerate(days, start=1):
            result = run_pipeline(day, env)
            if "error" in result:
                raise SystemExit(
                    f"bench: day {n} ({day}) failed after {result['wall']:.2f} s: {result['error']}"
                )
            lake_events += int(result["stage"].get("events", 0))
            print_day(n, day, result, lake_events)
            totals.append(result["timings"]["total"])
            rss.append(result["maxrss_self_mb"])
        # a known-empty day: the empty-feed check would stop it (by design), so allow it
        empty = run_pipeline(empty_day, {**env, "VDP_MIN_OBJECTS_PER_DAY": "0"})
    print(f"\nday after the last ({empty_day}, no objects, VDP_MIN_OBJECTS_PER_DAY=0):")
    if "error" in empty:
        print(
            f"  failed after {empty['wall']:.2f} s (peak RSS {empty['maxrss_self_mb']:.0f} MB): "
            f"{empty['error']}"
        )
    else:
        print(
            f"  total {empty['timings']['total']:.2f} s "
            f"(flow call from outside {empty['wall']:.2f} s), "
            f"peak RSS {empty['maxrss_self_mb']:.0f} MB, staged events "
            f"{int(empty['stage'].get('events', 0)):,}"
        )
    if len(days) >= 4:
        print("\nhistory growth (early = days 2-4, late = last 3 days):")
        print_ratio("wall (total)", "s ", totals)
        print_ratio("peak RSS", "MB", rss)
    else:
        print("\nhistory growth: needs --days 4 or more")
    print(f"  goal: both ratios <= {GOAL}")
    print(f"machine: {os.cpu_count()} CPUs, load average {_load()} at end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-day", type=int, default=250_000)
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument("--vehicles", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    add_shared_arguments(parser)
    args = parser.parse_args()
    if args.days < 1:
        parser.error("--days must be at least 1")
    run_in_workdir(run, args, "bench-history-")


if __name__ == "__main__":
    main()
