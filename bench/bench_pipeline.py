"""Benchmark: ~1,000,000 generated events through the whole daily_pipeline flow, next to a
naive script and the floor of the same work.

One generated source day (flows.tools.generate, not timed) is fetched from a local directory (or a
moto S3 endpoint with --source s3), staged, transformed, validated and loaded into a fresh
PostgreSQL database that the bench creates and drops. The flow runs in a fresh process (so
its peak RSS is its own) against a temporary Prefect API started before the clock starts.

- naive baseline: json.loads per line, one INSERT per row; measured on the first
  --naive-lines lines and extrapolated linearly to all lines.
- floor: DuckDB read_json -> Parquet, then one COPY of those rows into PostgreSQL.

    python bench/bench_pipeline.py [--events 1000000] [--source local|s3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = dt.date(2019, 6, 1)
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENT_COLUMNS = (
    'event text, "on" text, "at" timestamptz, entity_id text, organization_id text, '
    "lat float8, lng float8, location_at timestamptz, period_start timestamptz, "
    "period_finish timestamptz"
)
JSON_COLUMNS = {
    "event": "varchar",
    "on": "varchar",
    "at": "timestamptz",
    "organization_id": "varchar",
    "data": 'struct(id varchar, location struct(lat double, lng double, "at" timestamptz), '
    "start timestamptz, finish timestamptz)",
}
FLAT_EVENTS = (
    'select event, "on", "at", data.id as entity_id, organization_id, data.location.lat as lat, '
    "data.location.lng as lng, data.location.at as location_at, data.start as period_start, "
    "data.finish as period_finish from read_json($files, format = 'newline_delimited', "
    "ignore_errors = true, columns = $columns)"
)


def _generate(out: Path, options: dict) -> None:
    from flows.tools.generate import generate

    generate(out, **options)


def generate_once(out: Path, **options: object) -> Path:
    """``flows.tools.generate.generate(out, **options)`` in a child process, unless ``out`` already
    holds a finished generation (so repeated runs skip the minutes it takes); returns out."""
    if not (out / "expected.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(target=_generate, args=(out, options))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"bench: generating {out.name} failed (exit code {child.exitcode})")
        print(f"generated in {time.perf_counter() - started:.0f} s (not timed below)", flush=True)
    return out


def generated_day(workdir: Path, events: int) -> list[Path]:
    """The day's generated files (generated once per workdir and event count)."""
    out = generate_once(
        workdir / f"generated-{events}",
        start=DAY,
        days=1,
        orgs=3,
        vehicles=400,
        seed=1,
        quirk_rate=0.01,
        events_per_day=events,
    )
    return sorted((out / "data").glob(f"{DAY.isoformat()}*"))


# PostgreSQL and the source ------------------------------------------------------------------
class BenchDatabases:
    """Fresh databases (one per contender) on the admin server, dropped on exit; with
    admin_url 'embedded', on a temporary pgserver under the workdir."""

    def __init__(self, admin_url: str, workdir: Path) -> None:
        self.admin_url, self.workdir, self.names = admin_url, workdir, []
        self.server = None

    def __enter__(self) -> BenchDatabases:
        if self.admin_url == "embedded":
            import pgserver

            self.server = pgserver.get_server(self.workdir / "pg", cleanup_mode="delete")
            self.admin_url = self.server.get_uri()
        try:
            psycopg.connect(self.admin_url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise SystemExit(
                f"bench: cannot connect to {self.admin_url}: {str(exc).strip().splitlines()[0]}; "
                "pass --admin-url URL or --admin-url embedded"
            ) from None
        return self

    def url(self, name: str) -> str:
        """The URL of a new database vdp_bench_<pid>_<name>."""
        db = f"vdp_bench_{os.getpid()}_{name}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {db} with (force)")
            conn.execute(f"create database {db}")
        self.names.append(db)
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{db}"))

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for db in self.names:
                conn.execute(f"drop database if exists {db} with (force)")
        if self.server is not None:
            self.server.cleanup()


@contextmanager
def source_for(files: list[Path], s3: bool) -> Iterator[dict[str, str]]:
    """VDP_* source settings: the local directory, or a moto S3 endpoint holding the files."""
    if not s3:
        yield {"VDP_SOURCE_URL": str(files[0].parent), "VDP_S3_ENDPOINT_URL": ""}
        return
    import boto3

    from flows.demo import start_s3

    server, endpoint = start_s3()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="vdp-bench")
        for path in files:
            key = f"data/{path.name}"
            client.put_object(
                Bucket="vdp-bench", Key=key, Body=path.read_bytes(), ACL="public-read"
            )
        yield {"VDP_SOURCE_URL": "s3://vdp-bench/data/", "VDP_S3_ENDPOINT_URL": endpoint}
    finally:
        server.stop()


# the three contenders -----------------------------------------------------------------------
def _pipeline_child(day: dt.date, env: dict[str, str], reply: Connection) -> None:
    """In a fresh process: start the temporary Prefect API, then time daily_pipeline. A failed
    flow comes back as its one-line error (``error``) instead of its summary."""
    os.environ.update(env)
    os.dup2(2, 1)  # the flow's logs and DuckDB's progress bars go to stderr, figures to stdout
    from prefect import flow

    from flows.pipeline import daily_pipeline

    flow(name="bench-warm-up")(lambda: None)()
    started = time.perf_counter()
    try:
        summary = daily_pipeline(date=day)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}"}
    else:
        result = {
            "timings": summary["timings"],
            "stage": summary["stage"],
            "loaded_rows": summary["loaded"]["rows"],
            "lookback": summary.get("lookback"),
        }
    result["wall"] = time.perf_counter() - started
    result["maxrss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reply.send(result)


def fresh_lake_env(source: dict[str, str], workdir: Path, warehouse_url: str) -> dict[str, str]:
    """The environment of a pipeline run on a new, empty lake under workdir (removed first)."""
    shutil.rmtree(workdir / "lake", ignore_errors=True)
    return {
        **source,
        "VDP_LAKE_ROOT": str(workdir / "lake"),
        "VDP_WAREHOUSE_URL": warehouse_url,
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
    }


def run_pipeline(day: dt.date, env: dict[str, str]) -> dict:
    """daily_pipeline in a spawned process: its summary timings, wall time and peak RSS, or
    ``error`` when the flow failed. A child that dies without answering ends the bench."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_pipeline_child, args=(day, env, send))
    child.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    child.join()
    if result is None or child.exitcode != 0:
        raise SystemExit(f"bench: the pipeline run of {day} died (exit code {child.exitcode})")
    return result


def floor_copy(files: list[Path], out: Path, url: str) -> dict:
    """DuckDB read_json -> one Parquet file, then one CSV COPY of its rows into PostgreSQL,
    streamed through a named pipe (STACK_NOTES section 6)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    started = time.perf_counter()
    params = {"files": [str(f) for f in files], "columns": JSON_COLUMNS}
    con.execute(f"copy ({FLAT_EVENTS}) to '{out}/events.parquet' (compression zstd)", params)
    parquet = time.perf_counter() - started
    fifo = out / "rows.csv"
    os.mkfifo(fifo)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create table floor_events ({EVENT_COLUMNS})")
        started = time.perf_counter()
        to_csv = f"copy '{out}/events.parquet' to '{fifo}' (format csv, header false"
        writer = threading.Thread(target=con.execute, args=(to_csv + ", use_tmp_file false)",))
        writer.start()
        with (
            open(fifo, "rb") as pipe,
            conn.cursor().copy("copy floor_events from stdin (format csv)") as copy,
        ):
            while chunk := pipe.read(1 << 20):
                copy.write(chunk)
        writer.join()
        copied = time.perf_counter() - started
        rows = conn.execute("select count(*) from floor_events").fetchone()[0]
    return {"parquet": parquet, "copy": copied, "total": parquet + copied, "rows": rows}


def _naive_row(line: bytes) -> tuple | None:
    """The event's fields as a simple script reads them, or None for a line it skips."""
    try:
        event = json.loads(line)
        data = event.get("data") or {}
        where = data.get("location") or {}
        stamps = [event["at"], where.get("at"), data.get("start"), data.get("finish")]
        parsed = [dt.datetime.fromisoformat(s) if s else None for s in stamps]
        lat, lng = (
            float(v) if v is not None else None for v in (where.get("lat"), where.get("lng"))
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return (
        event.get("event"),
        event.get("on"),
        parsed[0],
        data.get("id"),
        event.get("organization_id"),
        lat,
        lng,
        *parsed[1:],
    )


def naive_insert(files: list[Path], url: str, limit: int) -> dict:
    """The first ``limit`` lines: json.loads each, one INSERT per row, one commit."""
    lines = [line for path in files for line in path.read_bytes().splitlines()][:limit]
    insert = "insert into naive_events values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    with psycopg.connect(url) as conn:
        conn.execute(f"create table naive_events ({EVENT_COLUMNS})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for line in lines:
                row = _naive_row(line)
                if row is not None:
                    cursor.execute(insert, row)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"lines": len(lines), "seconds": seconds}


# report -------------------------------------------------------------------------------------
def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def print_pipeline(result: dict, lines: int) -> None:
    timings = result["timings"]
    total = timings["total"]
    stage = result["stage"]
    print("\npipeline (daily_pipeline flow; per-stage times from the flow's summary):")
    for step in ("fetch+stage", "transform", "validate", "load"):
        print(
            f"  {step:<12} {timings.get(step, 0.0):7.2f} s  {_pct(timings.get(step, 0), total):>4}"
        )
    rest = total - sum(
        timings.get(s, 0.0) for s in ("fetch+stage", "transform", "validate", "load")
    )
    print(f"  {'other':<12} {rest:7.2f} s  {_pct(rest, total):>4}  (slots, catalog, artifacts)")
    print(f"  {'total':<12} {total:7.2f} s        (flow call from outside: {result['wall']:.2f} s)")
    print(
        f"  staged {stage['lines']:,} lines -> {stage['events']:,} events "
        f"({stage['duplicates']:,} duplicates, {stage['quarantined']:,} quarantined) "
        f"in {stage['seconds']:.2f} s"
    )
    print(f"  loaded rows: {result['loaded_rows']}")
    print(f"  end to end: {lines / total:,.0f} lines/s, {stage['events'] / total:,.0f} events/s")
    print(
        f"  peak RSS: flow process {result['maxrss_self_mb']:.0f} MB, "
        f"its children (Prefect server) {result['maxrss_children_mb']:.0f} MB"
    )


def print_verdict(pipeline: float, validate: float, floor: float, naive: float) -> None:
    print("\ntargets:")
    print(f"  end to end / floor      = {pipeline / floor:5.2f}x   (goal <= 2.5x)")
    print(f"  naive / end to end      = {naive / pipeline:5.1f}x   (goal >= 20x)")
    print(f"  validate / end to end   = {100 * validate / pipeline:5.1f}%   (goal < 25%)")


def run(args: argparse.Namespace, workdir: Path) -> None:
    files = generated_day(workdir, args.events)
    size = sum(p.stat().st_size for p in files)
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    print(f"data: {len(files)} files, {lines:,} lines, {size / 1e6:.0f} MB for source day {DAY}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with BenchDatabases(args.admin_url, workdir) as dbs:
        with source_for(files, s3=args.source == "s3") as source:
            env = fresh_lake_env(source, workdir, dbs.url("pipeline"))
            result = run_pipeline(DAY, env)
        if "error" in result:
            raise SystemExit(f"bench: the pipeline run failed: {result['error']}")
        print_pipeline(result, lines)
        floor = floor_copy(files, workdir / "floor", dbs.url("floor"))
        print(
            f"\nfloor: DuckDB read_json -> Parquet {floor['parquet']:.2f} s "
            f"+ one COPY of {floor['rows']:,} rows {floor['copy']:.2f} s = {floor['total']:.2f} s"
        )
        naive = naive_insert(files, dbs.url("naive"), args.naive_lines)
        estimate = naive["seconds"] / naive["lines"] * lines
        print(
            f"naive: json.loads + one INSERT per row (one transaction, table without indexes): "
            f"{naive['lines']:,} lines in "
            f"{naive['seconds']:.2f} s ({naive['lines'] / naive['seconds']:,.0f} lines/s); "
            f"extrapolated linearly to {lines:,} lines: {estimate:.0f} s"
        )
    print_verdict(
        result["timings"]["total"], result["timings"]["validate"], floor["total"], estimate
    )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """--admin-url and --workdir, as every whole-pipeline bench takes them."""
    parser.add_argument(
        "--admin-url",
        default=ADMIN_URL,
        help="a PostgreSQL the bench creates and drops its databases in; "
        "'embedded' starts a temporary pgserver instead",
    )
    parser.add_argument("--workdir", type=Path, help="kept when given (reuses generated data)")


def run_in_workdir(run: Callable, args: argparse.Namespace, prefix: str) -> None:
    """``run(args, workdir)`` in --workdir, or in a temporary directory removed afterwards."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(args, workdir.resolve())
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-lines", type=int, default=50_000)
    parser.add_argument("--source", choices=("local", "s3"), default="local")
    add_shared_arguments(parser)
    args = parser.parse_args()
    run_in_workdir(run, args, "bench-pipeline-")


if __name__ == "__main__":
    main()
