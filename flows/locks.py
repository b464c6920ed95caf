"""Process-level locks on the lake so two runs never stage the same day or publish at once."""

from __future__ import annotations

import datetime as dt
import fcntl
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from flows.errors import VdpError
from flows.lake import Lake


class LockTimeout(VdpError):
    """Another run holds the lock for longer than we are willing to wait."""


@contextmanager
def lake_lock(lake: Lake, name: str, *, wait_seconds: float = 600.0) -> Iterator[None]:
    """Hold an exclusive advisory file lock ``_locks/<name>.lock``; waits up to wait_seconds."""
    path = lake.lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"another run holds lock '{name}' on {lake.root} "
                        f"for more than {wait_seconds:.0f}s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def day_lock(lake: Lake, day: dt.date) -> AbstractContextManager[None]:
    """The lock of one source day's raw and staged partitions: its fetch, staging, prune."""
    return lake_lock(lake, f"day-{day.isoformat()}")


def publish_lock(lake: Lake) -> AbstractContextManager[None]:
    """The lock of the curated tables, state and warehouse: publishes, backup, restore."""
    return lake_lock(lake, "publish")


def catalog_lock(lake: Lake) -> AbstractContextManager[None]:
    """The lock of lake.duckdb: one catalog refresh at a time."""
    return lake_lock(lake, "catalog")
