"""Scaling out safely: run a flow's tasks on a Dask cluster (prefect-dask), and hold a Prefect
global concurrency slot per source day so two runs of the same day never overlap."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

from flows.errors import VdpError

F = TypeVar("F")

DAY_LIMIT_PREFIX = "vdp-day-"
DAY_SLOT_TIMEOUT_SECONDS = 3600.0
LOCAL_CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
    "silence_logs": logging.WARNING,
}
QUIET_LOGGERS = ("distributed", "dask", "bokeh", "tornado")


class DaskUnavailable(VdpError):
    """prefect-dask is not installed, so a Dask task runner cannot be built."""


class DayBusy(VdpError):
    """Another run holds a source day's concurrency slot for longer than we wait."""


def timeout_where_enforced(task_: F) -> F:
    """``task_`` as it should run from this thread. Prefect can interrupt a sync task at its
    timeout only in the main thread; in a worker thread (a backfill's thread pool, a Dask
    worker) it cannot, and logs a warning saying so on every run: there, the task runs without
    the timeout it could not keep (Prefect reads 0 as none)."""
    if threading.current_thread() is threading.main_thread():
        return task_
    if getattr(task_, "timeout_seconds", None) is None:
        return task_
    return task_.with_options(timeout_seconds=0)  # type: ignore[attr-defined]


def quiet_dask_logs(level: int = logging.WARNING) -> None:
    """Keep Dask's scheduler and worker chatter out of the run logs."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(level)


def dask_task_runner(address: str | None = None) -> Any:
    """A DaskTaskRunner on an existing cluster (address), else a local 2-process cluster."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise DaskUnavailable("Dask backfills need prefect-dask: pip install -e '.[dask]'") from exc
    quiet_dask_logs()
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=dict(LOCAL_CLUSTER)
    )


def with_dask(flow: F, address: str | None = None) -> F:
    """The flow with its tasks submitted to Dask: the cluster at ``address`` (tcp://host:8786),
    or a local cluster of 2 single-threaded worker processes when address is None."""
    return flow.with_options(task_runner=dask_task_runner(address))  # type: ignore[attr-defined]


def day_limit_name(day: dt.date) -> str:
    return f"{DAY_LIMIT_PREFIX}{day.isoformat()}"


def ensure_day_limits(names: Iterable[str]) -> None:
    """Create the per-day global concurrency limits (1 slot each) that do not exist yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
                continue
            except ObjectNotFound:
                pass
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            except ObjectAlreadyExists:
                pass  # another run created it between our read and our create


# Renewed while the run lives; a killed run's slot frees itself within about this long.
DAY_SLOT_LEASE_SECONDS = 60.0


@contextmanager
def day_slots(
    days: Iterable[dt.date], timeout_seconds: float = DAY_SLOT_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the Prefect concurrency slot of every given source day (all or none, atomically)
    for the duration of the block; waits up to timeout_seconds for runs holding them."""
    from prefect.concurrency.sync import concurrency

    names = [day_limit_name(d) for d in sorted(set(days))]
    with ExitStack() as stack:
        if names:
            ensure_day_limits(names)
            try:
                stack.enter_context(
                    concurrency(
                        names,
                        occupy=1,
                        timeout_seconds=timeout_seconds,
                        strict=True,
                        lease_duration=DAY_SLOT_LEASE_SECONDS,
                    )
                )
            except TimeoutError as exc:
                held = ", ".join(n.removeprefix(DAY_LIMIT_PREFIX) for n in names)
                raise DayBusy(
                    f"source day(s) {held} held by another run for more than "
                    f"{timeout_seconds:.0f}s; wait for it or cancel it in the Prefect UI"
                ) from exc
        yield
