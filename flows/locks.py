"""Process-level locks on the lake so two runs never stage the same day or publish at once."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flows.errors import VdpError
from flows.lake import Lake


class LockTimeout(VdpError):
    """Another run holds the lock for longer than we are willing to wait."""


@contextmanager
def lake_lock(lake: Lake, name: str, *, wait_seconds: float = 600.0) -> Iterator[None]:
    """Hold an exclusive advisory file lock ``_locks/<name>.lock``; waits up to wait_seconds."""
    path = lake.root / "_locks" / f"{name}.lock"
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
