"""Prefect deployments of the pipeline: the definitions `vdp serve` serves from one process,
kept identical to prefect.yaml (work pool deployments) by tests/test_entrypoints.py."""

from __future__ import annotations

from typing import Any

WORK_POOL = "vdp-process"
DAILY_DEPLOYMENT = "daily"
BACKFILL_DEPLOYMENT = "backfill"
REPROCESS_DEPLOYMENT = "reprocess"
DAILY_CRON = "0 3 * * *"
SCHEDULE_TIMEZONE = "UTC"
TAGS = ["vdp"]


def run_limit() -> Any:
    """One run per deployment at a time; later ones wait in the queue rather than overlap."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def served_deployments() -> list[Any]:
    """The daily deployment (03:00 UTC, processes yesterday), the unscheduled backfill, and
    the unscheduled reprocess (from the raw zone)."""
    from prefect.schedules import Cron

    from flows.pipeline import backfill, daily_pipeline, reprocess

    daily = daily_pipeline.to_deployment(
        name=DAILY_DEPLOYMENT,
        schedules=[Cron(DAILY_CRON, timezone=SCHEDULE_TIMEZONE)],
        concurrency_limit=run_limit(),
        tags=[*TAGS, "daily"],
        description="Fetch, stage, transform, validate and load one source day "
        "(scheduled runs process the day before their scheduled start).",
    )
    backfill_deployment = backfill.to_deployment(
        name=BACKFILL_DEPLOYMENT,
        concurrency_limit=run_limit(),
        tags=[*TAGS, "backfill"],
        description="Process a range of source days (start, end).",
    )
    reprocess_deployment = reprocess.to_deployment(
        name=REPROCESS_DEPLOYMENT,
        concurrency_limit=run_limit(),
        tags=[*TAGS, "reprocess"],
        description="Re-stage and re-publish a range of source days from the raw zone alone.",
    )
    return [daily, backfill_deployment, reprocess_deployment]


def serve(limit: int | None = 2) -> None:
    """Serve both deployments from this process until interrupted (a laptop alternative to
    a work pool and workers); runs started here execute in this process's subprocesses."""
    from prefect import serve as prefect_serve

    prefect_serve(*served_deployments(), limit=limit)
