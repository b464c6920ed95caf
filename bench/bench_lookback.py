"""Benchmark: what a daily run's lookback costs, with nothing new and with a late object.

N generated source days (flows.tools.generate, not timed) are served from a moto S3 endpoint (the
production code path: listings and downloads over HTTP), with the last object of day N-1
held back. Days 1..N-1 are loaded one at a time; then day N runs alternately with
VDP_LOOKBACK_DAYS=0 and =3 (nothing new in the lookback: one listing per day), --repeat
times each; finally the held-back object is uploaded and day N runs once more with lookback
3, which catches it, re-stages day N-1 and publishes both days. Each run is daily_pipeline
in a fresh spawned process against a fresh lake and PostgreSQL database (see
bench_pipeline.py); the figures are the flow's own stage timings.

    python bench/bench_lookback.py [--days 4] [--events-per-day 250000] [--repeat 3]
        [--workdir DIR] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

import bench_pipeline as bench  # noqa: E402

START = dt.date(2019, 6, 1)
COLUMNS = ("fetch+stage", "lookback", "transform", "validate", "load", "total")


def _line(label: str, result: dict) -> str:
    if "error" in result:
        raise SystemExit(f"bench: {label} failed: {result['error']}")
    t = result["timings"]
    late = sum(len(d["late_objects"]) for d in result.get("lookback") or [])
    staged = sum(d["staged"] for d in result.get("lookback") or [])
    figures = " ".join(f"{t.get(c, 0.0):>9.2f}" for c in COLUMNS)
    return f"{label:<28} {figures} {late:>5} {staged:>7} {result['maxrss_self_mb']:>7.0f}"


def run(args: argparse.Namespace, workdir: Path) -> None:
    name = f"generated-lookback-{args.days}d-{args.events_per_day}"
    out = bench.generate_once(
        workdir / name,
        start=START,
        days=args.days,
        orgs=4,
        vehicles=25,
        seed=1,
        events_per_day=args.events_per_day,
    )
    files = sorted((out / "data").glob("*.json"))
    last = START + dt.timedelta(days=args.days - 1)
    before_last = (last - dt.timedelta(days=1)).isoformat()
    held = [f for f in files if f.name.startswith(before_last)][-1]
    print(
        f"{len(files)} objects, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB; "
        f"held back {held.name}"
    )
    header = " ".join(f"{c:>9}" for c in COLUMNS)
    print(f"{'run':<28} {header} {'late':>5} {'staged':>7} {'RSS MB':>7}")
    with (
        bench.BenchDatabases(args.admin_url, workdir) as dbs,
        bench.source_for([f for f in files if f != held], s3=True) as source,
    ):
        env = bench.fresh_lake_env(source, workdir, dbs.url("lookback"))
        for n in range(args.days - 1):
            day = START + dt.timedelta(days=n)
            print(_line(f"day {day} (lookback 3)", bench.run_pipeline(day, env)), flush=True)
        totals: dict[int, list[float]] = {0: [], 3: []}
        listing: list[float] = []
        for _ in range(args.repeat):
            for lookback in (0, 3):
                result = bench.run_pipeline(last, {**env, "VDP_LOOKBACK_DAYS": str(lookback)})
                print(_line(f"day {last} lookback {lookback}", result), flush=True)
                totals[lookback].append(result["timings"]["total"])
                if lookback:
                    listing.append(result["timings"]["lookback"])
        _upload(source, held)
        caught = bench.run_pipeline(last, {**env, "VDP_LOOKBACK_DAYS": "3"})
        print(_line(f"day {last} late object", caught), flush=True)
    print(
        f"median total: lookback 0 {statistics.median(totals[0]):.2f} s, lookback 3 with "
        f"nothing new {statistics.median(totals[3]):.2f} s; the lookback step itself "
        f"(3 listings, no writes) {statistics.median(listing):.3f} s"
    )


def _upload(source: dict[str, str], path: Path) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=source["VDP_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.put_object(
        Bucket="vdp-bench", Key=f"data/{path.name}", Body=path.read_bytes(), ACL="public-read"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--events-per-day", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    bench.add_shared_arguments(parser)
    args = parser.parse_args()
    bench.run_in_workdir(run, args, "bench-lookback-")


if __name__ == "__main__":
    main()
