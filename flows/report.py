"""What a run tells people: Prefect artifacts, the console summary and the BI answer table."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flows.lake import Lake
from flows.settings import Settings, get_settings

log = logging.getLogger(__name__)

ANSWER_COLUMNS = [
    "operating_period_id",
    "organization_id",
    "start_at",
    "finish_at",
    "vehicles",
    "avg_distance_km",
    "total_distance_km",
    "total_break_distance_km",  # beside the distance: what breaks left out of it
]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return "" if value is None else str(value)


def _as_dict(value: Any) -> dict:
    """A stage report as a dict, whether the stage returned a dict or a report object."""
    if value is None:
        return {}
    return value if isinstance(value, dict) else value.to_dict()


def answer_rows(rows: list[dict]) -> list[dict]:
    """The answer rows with readable values (used by the table artifact and the console)."""
    return [{c: _fmt(r.get(c)) for c in ANSWER_COLUMNS} for r in rows]


def late_objects(summary: dict) -> list[tuple[str, str]]:
    """(source day, object key) of every late object the run's lookback caught."""
    days = summary.get("lookback") or []
    return [(d["source_day"], key) for d in days for key in d.get("late_objects") or []]


def _lookback_rows(summary: dict) -> list[str]:
    """The lookback's rows of the summary table: days re-listed, late objects, their periods."""
    days = summary.get("lookback")
    if days is None:
        return []
    if not days:
        return ["| lookback | earlier source days re-listed | none (lookback 0) |"]
    late = late_objects(summary)
    names = "<br>".join(f"`{key}` ({day})" for day, key in late[:20]) or "none"
    if len(late) > 20:
        names += f"<br>… and {len(late) - 20} more"
    periods = summary.get("late_periods") or []
    shown = ", ".join(f"`{p}`" for p in periods[:10]) + (" …" if len(periods) > 10 else "")
    return [
        f"| lookback | earlier source days re-listed | {days[0]['source_day']} … "
        f"{days[-1]['source_day']} ({sum(d['listed'] for d in days)} objects listed) |",
        f"| lookback | late objects caught | {names} |",
        f"| lookback | periods recomputed because of them | {len(periods)} {shown} |",
    ]


def run_markdown(summary: dict) -> str:
    """The run summary as Markdown: fetch, stage, transform, validation, load, timings."""
    fetch, stage = summary.get("fetch") or {}, summary.get("stage") or {}
    reasons = sorted((stage.get("quarantine_reasons") or {}).items(), key=lambda kv: -kv[1])
    lines = [
        f"# Daily pipeline: source day {summary.get('source_day')}",
        f"**Status:** {summary.get('status', 'unknown')}  ",
        f"**Run id:** `{summary.get('run_id')}`",
        "",
        "| stage | figure | value |",
        "| --- | --- | --- |",
        f"| fetch | objects listed / fetched / skipped | {fetch.get('listed', '-')} / "
        f"{fetch.get('fetched', '-')} / {fetch.get('skipped', '-')} |",
        f"| fetch | bytes fetched | {fetch.get('bytes_fetched', 0):,} |",
        f"| stage | lines / events / duplicates / quarantined | {stage.get('lines', '-')} / "
        f"{stage.get('events', '-')} / {stage.get('duplicates', '-')} / "
        f"{stage.get('quarantined', '-')} |",
        f"| stage | top quarantine reasons | "
        f"{', '.join(f'{r} ({n})' for r, n in reasons[:5]) or 'none'} |",
        f"| transform | periods recomputed | {len(summary.get('recomputed_periods') or [])} |",
        *_lookback_rows(summary),
    ]
    for table, rows in sorted((summary.get("loaded") or {}).get("rows", {}).items()):
        lines.append(f"| load | rows loaded into {table} | {rows:,} |")
    validation = _as_dict(summary.get("validation"))
    if validation:
        outcome = "passed" if validation.get("success") else "FAILED"
        warnings = validation.get("warnings") or []
        lines.append(f"| validate | outcome | {outcome}, {len(warnings)} warning(s) |")
        if validation.get("summary"):
            lines.append(f"| validate | summary | {validation['summary']} |")
    for stage_name, seconds in (summary.get("timings") or {}).items():
        lines.append(f"| timing | {stage_name} | {seconds:.2f} s |")
    if validation:
        lines += ["", *_validation_links(summary, validation)]
    return "\n".join(lines)


def _validation_links(summary: dict, validation: dict) -> list[str]:
    """Where the details are: the run's Data Docs pages and the expectation table artifact."""
    pages = validation.get("docs_pages") or {}
    links = " · ".join(f"[{suite}]({url})" for suite, url in pages.items())
    return [
        f"**Great Expectations Data Docs of this run:** {links or 'not built'}  ",
        f"**Every expectation:** artifact `{validation_key(summary)}`",
    ]


def validation_key(summary: dict) -> str:
    return f"validation-{summary.get('source_day', 'unknown')}"


def publish_run_artifacts(settings: Settings, lake: Lake, summary: dict) -> None:
    """A Markdown summary (one screen, linking the run's Data Docs), the expectation table, and
    a table of the touched periods' answer, in the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    day = str(summary.get("source_day", "unknown"))
    create_markdown_artifact(
        key=f"run-summary-{day}",
        markdown=run_markdown(summary),
        description=f"daily pipeline summary for source day {day}",
    )
    validation = _as_dict(summary.get("validation"))
    if validation.get("markdown"):
        create_markdown_artifact(
            key=validation_key(summary),
            markdown=validation["markdown"],
            description=f"every expectation of the run for source day {day}",
        )
    touched = set(summary.get("recomputed_periods") or [])
    if not touched or summary.get("status") != "succeeded":
        return
    from flows.load import fetch_answer
    from flows.warehouse import warehouse_url

    answer = fetch_answer(warehouse_url(settings, lake))
    rows = [r for r in answer if r["operating_period_id"] in touched]
    create_table_artifact(
        key=f"answer-{day}",
        table=answer_rows(rows),
        description="average distance per operating period, for the periods this run touched",
    )


def print_run_summary(summary: dict) -> None:
    fetch, stage = summary.get("fetch") or {}, summary.get("stage") or {}
    loaded = (summary.get("loaded") or {}).get("rows", {})
    total = (summary.get("timings") or {}).get("total")  # absent for a backfill's single days
    print(
        f"{summary.get('source_day')}: fetched {fetch.get('fetched', 0)}/{fetch.get('listed', 0)} "
        f"objects, staged {stage.get('events', 0):,} events "
        f"({stage.get('duplicates', 0)} duplicates, {stage.get('quarantined', 0)} quarantined), "
        f"recomputed {len(summary.get('recomputed_periods') or [])} periods, "
        f"loaded {sum(loaded.values()):,} rows" + (f" in {total:.1f}s" if total is not None else "")
    )
    late = late_objects(summary)
    if late:
        days = sorted({day for day, _ in late})
        print(
            f"  late objects: {len(late)} for source day(s) {', '.join(days)}, recomputing "
            f"{len(summary.get('late_periods') or [])} periods"
        )


def print_answer(date: dt.date | None = None, settings: Settings | None = None) -> None:
    """Print the BI answer table from the warehouse."""
    from flows.catalog import format_table
    from flows.load import fetch_answer
    from flows.warehouse import warehouse_url

    settings = settings or get_settings()
    rows = answer_rows(fetch_answer(warehouse_url(settings, Lake(settings.lake_root)), date))
    print(format_table(ANSWER_COLUMNS, [tuple(r[c] for c in ANSWER_COLUMNS) for r in rows]))
