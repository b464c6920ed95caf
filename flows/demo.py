"""`vdp demo`: the whole pipeline on a laptop with nothing configured.

Starts an embedded S3 endpoint (moto's threaded server, from the ``demo`` extra), writes
generated days (plus, with ``--sample DIR``, the real door2door sample) into a bucket, runs the
daily pipeline for each day against an embedded PostgreSQL, prints the answer and where
everything lives. Needs no file outside the installed package.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from flows.errors import VdpError

DEMO_BUCKET = "vdp-demo"
SAMPLE_DAY = dt.date(2019, 6, 1)
MISSING_MOTO = (
    "vdp demo needs the 'demo' extra (moto, its embedded S3 endpoint): "
    "pip install 'vehicle-data-pipeline[demo]', or pip install -e '.[demo]' in a checkout"
)


class DemoError(VdpError):
    """The demo cannot start: a missing extra, or a sample folder that is not one."""


def require_moto() -> None:
    """Fail before anything starts when the ``demo`` extra is not installed."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise DemoError(MISSING_MOTO) from None


def start_s3() -> tuple[object, str]:
    """An in-process S3-compatible HTTP endpoint on a free local port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def upload_sample(client, bucket: str, sample_dir: Path) -> int:
    """Put the real sample's files into the bucket under data/, publicly readable."""
    files = sorted((sample_dir / "data").glob("*.json"))
    for path in files:
        client.put_object(
            Bucket=bucket, Key=f"data/{path.name}", Body=path.read_bytes(), ACL="public-read"
        )
    return len(files)


def run_demo(days: int = 3, ui_port: int | None = None, sample_dir: Path | None = None) -> None:
    """The demo; with ``ui_port``, against a Prefect server with its UI on that port, kept up
    (with the links to this demo's runs printed) until Ctrl-C; with ``sample_dir``, the real
    sample's day too."""
    require_moto()
    if sample_dir is not None and not (sample_dir / "data").is_dir():
        raise DemoError(f"no door2door sample at {sample_dir} (expected {sample_dir / 'data'}/)")
    if ui_port is None:
        _run_demo(days, sample_dir, ui=False)
        return
    from prefect.settings import PREFECT_HOME

    from flows.ui import prefect_ui, run_links, wait_for_interrupt

    with prefect_ui(ui_port, Path(PREFECT_HOME.value()) / "vdp-demo-server.log") as server:
        run_days = _run_demo(days, sample_dir, ui=True)
        print(f"\nPrefect UI:  {server.url}/runs")
        for day, run_page, artifact_page, artifact_api in run_links(server, run_days):
            print(f"  {day}  run:     {run_page}")
            print(f"              summary: {artifact_page}")
            print(f"              (API:    {artifact_api})")
        if server.process is None:
            print(f"(the Prefect server on {server.url} was already running; it keeps running)")
            return
        print("Press Ctrl-C to stop the Prefect server.", flush=True)
        wait_for_interrupt(server)
        print("demo: stopping the Prefect server", flush=True)


def _run_demo(days: int, sample_dir: Path | None, *, ui: bool) -> list[dt.date]:
    import os

    import boto3

    from flows.pipeline import daily_pipeline
    from flows.report import print_answer, print_run_summary
    from flows.settings import export_overrides, get_settings
    from flows.tools.generate import generate
    from flows.warehouse import embedded_psql_hint

    started = time.perf_counter()
    for key, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo")):
        os.environ.setdefault(key, value)  # the embedded endpoint accepts any signature
    server, endpoint = start_s3()
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=DEMO_BUCKET)
        first = SAMPLE_DAY + dt.timedelta(days=1)
        result = generate(
            f"s3://{DEMO_BUCKET}/",
            first,
            days,
            orgs=2,
            vehicles=25,
            seed=7,
            quirk_rate=0.01,
            s3_endpoint_url=endpoint,
        )
        print(f"demo: generated {result.lines:,} lines in {result.files} files for {days} day(s)")
        run_days: list[dt.date] = []
        if sample_dir is not None:
            count = upload_sample(client, DEMO_BUCKET, sample_dir)
            print(f"demo: uploaded the real door2door sample ({count} files) for {SAMPLE_DAY}")
            run_days.append(SAMPLE_DAY)
        run_days = sorted(run_days + [first + dt.timedelta(days=i) for i in range(days)])
        export_overrides(
            source_url=f"s3://{DEMO_BUCKET}/data/", s3_endpoint_url=endpoint, s3_anonymous=True
        )
        for day in run_days:
            print_run_summary(daily_pipeline(date=day))
    finally:
        server.stop()
    settings = get_settings()
    print()
    print_answer(settings=settings)
    _print_locations(settings, embedded_psql_hint, time.perf_counter() - started, ui)
    return run_days


def _print_locations(settings, psql_hint, seconds: float, ui: bool) -> None:
    from flows.lake import Lake

    lake = Lake(settings.lake_root)
    print(f"\ndemo finished in {seconds:.0f}s")
    print(f"  lake:        {lake.root}")
    print(
        f'  DuckDB:      duckdb {lake.duckdb_path}   (or: vdp query "select * from events limit 5")'
    )
    if settings.warehouse_url is None:
        print(f"  warehouse:   {psql_hint(lake)}")
        print(
            "               (the embedded PostgreSQL keeps running; `vdp warehouse stop` stops it)"
        )
    else:
        print("  warehouse:   the server in VDP_WAREHOUSE_URL, schema warehouse")
    if not ui:
        print("  Prefect UI:  `vdp demo --ui` runs the demo against a Prefect server on")
        print("               127.0.0.1:4200 and keeps it up, with links to the runs and artifacts")
