"""Named points of a run where a crash can land, so tests can kill a real run at each one.

``checkpoint(name)`` does nothing unless the test-only variable ``VDP_CRASH_AT`` names the
point (``name``, or ``name#N`` for its Nth pass, counted per process): then the process
SIGKILLs itself there, which runs no ``finally``, no ``atexit`` and flushes nothing, as a power
cut or the OOM killer would. ``VDP_CHECKPOINT_TRACE=FILE`` appends each point passed to FILE
(one name a line), so a test can list the points a normal run reaches in order. Neither is a
setting: they are read here, not in ``flows.settings``, so that a point costs one dict lookup
and works before settings load.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

CRASH_ENV = "VDP_CRASH_AT"
TRACE_ENV = "VDP_CHECKPOINT_TRACE"

# name -> what is on disk / in the warehouse when a run stops there
CHECKPOINTS: dict[str, str] = {
    "fetch.raw_written": "a downloaded object renamed into raw/, the manifest not yet updated",
    "fetch.manifest_written": "the source day's manifest replaced, staging not started",
    "write.temp_written": "an atomic write's temporary file whole, not yet renamed into place",
    "stage.written": "a source day's new events and quarantine Parquet whole under _tmp/",
    "swap.journal_prepared": "a swap's journal says prepared, nothing moved yet",
    "swap.partly_moved": "the first partition of a swap moved (old one to its backup)",
    "swap.published": "every new partition in place, backups kept, journal says published",
    "swap.backups_dropped": "a committing swap's backups removed, its journal not yet",
    "publish.transformed": "the curated tables, changes and state whole under _tmp/",
    "publish.validated": "the run's validation report written, the lake swap not started",
    "load.copied": "inside the load transaction: the staging tables filled by COPY",
    "load.merged": "inside the load transaction: every table merged, load_audit not written",
    "load.audited": "inside the load transaction: load_audit written, COMMIT not sent",
    "load.committed": "the load transaction committed, the lake swap not yet committed",
    "catalog.built": "the new lake.duckdb whole under _tmp/, not yet renamed into place",
}

_passes: Counter[str] = Counter()
_lock = threading.Lock()


def checkpoint(name: str) -> None:
    """Mark a point of the run (see the module docstring); a no-op in production."""
    crash_at = os.environ.get(CRASH_ENV)
    trace = os.environ.get(TRACE_ENV)
    if not crash_at and not trace:
        return
    if name not in CHECKPOINTS:
        raise KeyError(f"unregistered checkpoint {name!r}")
    with _lock:
        _passes[name] += 1
        count = _passes[name]
        if trace:
            with open(trace, "a") as handle:
                handle.write(name + "\n")
    if crash_at in (name, f"{name}#{count}"):
        os.kill(os.getpid(), signal.SIGKILL)
