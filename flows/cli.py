"""`vdp`: the command line. Exit code 0 on success; one line on stderr and 1 on failure."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.errors import VdpError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override VDP_* variables)")
    group.add_argument("--source-url", help="s3://bucket/prefix/ or a local directory")
    group.add_argument("--s3-endpoint-url", help="S3-compatible endpoint URL")
    group.add_argument(
        "--s3-anonymous",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="unsigned S3 requests (public bucket)",
    )
    group.add_argument("--lake-root", help="lake root directory")
    group.add_argument("--warehouse-url", help="postgresql://… (default: embedded PostgreSQL)")


def _apply_settings(args: argparse.Namespace) -> None:
    from flows.settings import export_overrides

    export_overrides(
        source_url=args.source_url,
        s3_endpoint_url=args.s3_endpoint_url,
        s3_anonymous=args.s3_anonymous,
        lake_root=args.lake_root,
        warehouse_url=args.warehouse_url,
    )


def _check_range(args: argparse.Namespace) -> None:
    if args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")


def cmd_run(args: argparse.Namespace) -> None:
    from flows.pipeline import backfill, daily_pipeline
    from flows.report import print_run_summary

    if args.date and (args.start or args.end):
        raise UsageError("give either --date or --start/--end, not both")
    if args.lookback_days is not None and not args.date:
        raise UsageError("--lookback-days applies to a daily run (--date D)")
    if args.allow_empty:
        from flows.settings import export_overrides

        export_overrides(min_objects_per_day=0)
    if args.date:
        print_run_summary(daily_pipeline(date=args.date, lookback_days=args.lookback_days))
        return
    if not (args.start and args.end):
        raise UsageError("give --date D, or --start D1 --end D2")
    _check_range(args)
    flow = backfill
    if args.dask or args.dask_address:
        from flows.scale import with_dask

        flow = with_dask(backfill, args.dask_address)
    result = flow(start=args.start, end=args.end)
    for day in result["results"]:
        print_run_summary(day)


def cmd_reprocess(args: argparse.Namespace) -> None:
    from flows.pipeline import reprocess
    from flows.report import print_run_summary

    _check_range(args)
    result = reprocess(start=args.start, end=args.end)
    for day in result["results"]:
        print_run_summary(day)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a number of days (0 or more): {text!r}")
    return value


def cmd_generate(args: argparse.Namespace) -> None:
    from flows.settings import get_settings
    from flows.tools.generate import generate

    settings = get_settings()
    result = generate(
        args.out,
        args.start,
        args.days,
        orgs=args.orgs,
        vehicles=args.vehicles,
        seed=args.seed,
        quirk_rate=args.quirk_rate,
        events_per_day=args.events_per_day,
        break_rate=args.break_rate,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
    )
    print(
        f"wrote {result.files} files, {result.lines:,} lines, {result.bytes:,} bytes to {args.out}"
    )


def cmd_report(args: argparse.Namespace) -> None:
    from flows.report import print_answer

    print_answer(args.date)


def cmd_query(args: argparse.Namespace) -> None:
    from flows.catalog import format_table, query
    from flows.lake import Lake
    from flows.settings import get_settings

    columns, rows = query(Lake(get_settings().lake_root), args.sql)
    print(format_table(columns, rows))


def cmd_docs(args: argparse.Namespace) -> None:
    from flows.lake import Lake
    from flows.settings import get_settings
    from flows.validate import docs_index

    print(docs_index(Lake(get_settings().lake_root)))


def cmd_demo(args: argparse.Namespace) -> None:
    from flows.demo import run_demo

    run_demo(days=args.days, ui_port=args.ui_port if args.ui else None, sample_dir=args.sample)


def cmd_warehouse(args: argparse.Namespace) -> None:
    from flows.lake import Lake
    from flows.settings import get_settings
    from flows.warehouse import stop_embedded

    settings = get_settings()
    if settings.warehouse_url is not None:
        raise UsageError("VDP_WAREHOUSE_URL is set: vdp only starts and stops the embedded one")
    lake = Lake(settings.lake_root)
    if stop_embedded(lake):
        print(f"stopped the embedded PostgreSQL in {lake.warehouse_dir}")
    else:
        print(f"the embedded PostgreSQL in {lake.warehouse_dir} is not running")


def cmd_serve(args: argparse.Namespace) -> None:
    from flows.deploy import serve

    serve()


def cmd_status(args: argparse.Namespace) -> None:
    import json

    from flows.settings import get_settings
    from flows.status import StaleData, collect_status, format_status

    status = collect_status(
        get_settings(),
        max_lag_days=args.max_lag_days,
        today=args.today,
        quarantine_threshold=args.max_quarantine_share,
    )
    print(json.dumps(status.to_dict(), indent=2) if args.json else format_status(status))
    if status.stale:
        raise StaleData(status.reason())


def cmd_alerts(args: argparse.Namespace) -> None:
    from flows.alerts import ensure_alerts
    from flows.settings import get_settings

    for result in ensure_alerts(get_settings()):
        print(f"{result.action} automation {result.name} ({result.automation_id})")


def _ops_context() -> tuple:
    """The configured warehouse URL and lake for the operations commands."""
    from flows.lake import Lake
    from flows.settings import get_settings
    from flows.warehouse import warehouse_url

    settings = get_settings()
    lake = Lake(settings.lake_root)
    return warehouse_url(settings, lake), lake


def cmd_backup(args: argparse.Namespace) -> None:
    from flows.ops import backup

    url, lake = _ops_context()
    summary = backup(url, lake, Path(args.out))
    rows = sum(summary.tables.values())
    print(
        f"backed up {len(summary.tables)} warehouse tables ({rows:,} rows) and "
        f"{summary.lake_files} lake files to {summary.path}"
    )


def cmd_restore(args: argparse.Namespace) -> None:
    from flows.ops import restore

    url, lake = _ops_context()
    summary = restore(url, lake, Path(args.source))
    rows = sum(summary.tables.values())
    print(
        f"restored {len(summary.tables)} warehouse tables ({rows:,} rows) and "
        f"{summary.lake_files} lake files into {lake.root}"
    )


def cmd_prune(args: argparse.Namespace) -> None:
    from flows.lake import Lake
    from flows.ops import prune_raw
    from flows.settings import get_settings

    summary = prune_raw(Lake(get_settings().lake_root), args.raw_older_than)
    for path in summary.removed:
        print(f"removed {path}")
    print(
        f"pruned {len(summary.removed)} raw files ({summary.bytes_removed:,} bytes) of source "
        f"days before {summary.cutoff}; kept {len(summary.kept_unstaged)} not yet staged"
    )


class UsageError(VdpError):
    """A command line that cannot be run as given."""


DEBUG_HELP = "on an error, print its traceback before the one-line reason (or VDP_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdp", description="Vehicle data pipeline")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _settings_flags(p)
        # also after the command; SUPPRESS keeps a `vdp --debug CMD` given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "demo", cmd_demo, "run the whole pipeline on sample data with embedded S3 and PostgreSQL"
    )
    p.add_argument("--days", type=int, default=3, help="generated days")
    p.add_argument(
        "--sample",
        type=Path,
        metavar="DIR",
        help="also the real door2door sample of 2019-06-01 (DIR holds data/*.json)",
    )
    p.add_argument(
        "--ui",
        action="store_true",
        help="run against a Prefect server with its UI (started, or reused) and keep it up "
        "until Ctrl-C",
    )
    p.add_argument("--ui-port", type=int, default=4200, help="port of that server on 127.0.0.1")
    p = add("run", cmd_run, "run the daily pipeline for a day, or a backfill over a range")
    p.add_argument("--date", type=_date)
    p.add_argument("--start", type=_date)
    p.add_argument("--end", type=_date)
    p.add_argument(
        "--lookback-days",
        type=_days,
        help="earlier source days to re-list for late objects (default VDP_LOOKBACK_DAYS, 3)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="let source days with no objects pass (VDP_MIN_OBJECTS_PER_DAY=0), e.g. a "
        "backfill over known-empty days",
    )
    p.add_argument("--dask", action="store_true", help="backfill on a local Dask cluster")
    p.add_argument("--dask-address", help="backfill on an existing Dask cluster (tcp://host:8786)")
    p = add(
        "reprocess",
        cmd_reprocess,
        "re-stage and re-publish source days from the raw zone alone, without the source",
    )
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p = add("generate", cmd_generate, "write realistic synthetic door2door events")
    p.add_argument("--out", required=True, help="directory or s3://bucket/prefix/")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--orgs", type=int, default=2)
    p.add_argument("--vehicles", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quirk-rate", type=float, default=0.01)
    p.add_argument("--events-per-day", type=int, default=None)
    p.add_argument(
        "--break-rate", type=float, default=0.3, help="chance a driver breaks in a period"
    )
    p = add("report", cmd_report, "the BI answer from the warehouse")
    p.add_argument("--date", type=_date, help="only periods overlapping this UTC date")
    p = add("query", cmd_query, "SQL over the lake in DuckDB")
    p.add_argument("sql")
    p = add("status", cmd_status, "newest loaded source day and event, last run; fails when stale")
    p.add_argument(
        "--max-lag-days",
        type=int,
        default=2,
        metavar="N",
        help="exit 1 when the newest loaded source day is more than N days old",
    )
    p.add_argument(
        "--max-quarantine-share",
        type=float,
        default=0.05,
        metavar="F",
        help="list recent source days whose quarantined share of lines is above F",
    )
    p.add_argument(
        "--today", type=_date, help="judge freshness as of this date (default: UTC today)"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add(
        "alerts",
        cmd_alerts,
        "create or update the Prefect automations that alert on failed or missing daily runs",
    )
    p = add("warehouse", cmd_warehouse, "manage the embedded PostgreSQL (any run starts it)")
    p.add_argument("action", choices=["stop"], help="stop: shut the embedded server down")
    add("docs", cmd_docs, "print the path of the Great Expectations Data Docs")
    add("serve", cmd_serve, "serve the daily and backfill flows from this process (laptop)")
    p = add("backup", cmd_backup, "back up the warehouse, manifests and curated tables")
    p.add_argument("out", help="new directory, or a file ending in .tar")
    p = add("restore", cmd_restore, "restore a backup into an empty warehouse and lake")
    p.add_argument("source", metavar="IN", help="backup directory or .tar file")
    p = add("prune", cmd_prune, "remove raw files of old source days that are already staged")
    p.add_argument("--raw-older-than", type=int, required=True, metavar="DAYS")
    return parser


def _console_defaults() -> None:
    """Keep stderr for the one-line error: Prefect's console logs (run progress, and the
    tracebacks it logs for failed tasks) go to stdout. Read when Prefect sets up logging.
    Each only a default: the user's environment wins."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")
    # The temporary Prefect API a run starts, and GX, send no usage data unless asked to: offline
    # their failed attempts would log errors the user can do nothing about.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # The first start of a temporary Prefect API after an install compiles its modules: Prefect's
    # 20 s wait for it is too short on a busy laptop.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _debug_requested(args: argparse.Namespace) -> bool:
    """``--debug``, or ``VDP_DEBUG=1``: read here rather than through the settings, because it
    must work when the settings themselves are what fails."""
    return args.debug or os.environ.get("VDP_DEBUG", "").lower() in {"1", "true", "yes"}


def _error_line(exc: Exception, debug: bool) -> str:
    """The product's errors as their own one-line message; anything else is a bug, named as one."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, VdpError):
        return f"vdp: error: {message}"
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"vdp: error: unexpected error: {type(exc).__name__}: {message}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    _console_defaults()
    args = build_parser().parse_args(argv)
    debug = _debug_requested(args)
    try:
        _apply_settings(args)
        args.handler(args)
    except KeyboardInterrupt:
        print("vdp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line on stderr; the traceback only with --debug
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(_error_line(exc, debug), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
