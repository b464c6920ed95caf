"""Crash a pipeline step for real: run it in a child process and SIGKILL that process at a
chosen point, then read back what it left (lake and warehouse snapshots).

Two ways to kill, both a real ``SIGKILL`` (no ``finally``, no ``atexit``, no flush):
- ``crash_at``: the child wraps one function (e.g. ``os.replace``) and kills *itself* on the
  Nth call whose arguments mention a given text, before or after the call. The wrapping lives
  only in this test child, never in the pipeline code, and pins the kill between two syscalls.
- from outside: ``start_step`` returns the ``Popen``; the test waits for a condition it can see
  (a stalled download, a backend waiting on a lock) and calls ``kill_hard``.

Run as a script, this module is the child: ``python tests/support_crash.py STEP DAY``.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import polars as pl
import psycopg

from tests.support_faults import HOP_HEADERS, FaultyS3Proxy

CRASH_ENV = "VDP_TEST_CRASH_AT"
WAREHOUSE_TABLES = {
    "dim_organization": "organization_id",
    "dim_vehicle": "vehicle_id",
    "dim_date": "date_key",
    "fact_operating_period": "operating_period_id",
    "fact_vehicle_operating_period": "operating_period_id, vehicle_id",
    "fact_vehicle_event": "event_id",
}
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CrashAt:
    """Kill the child on the ``nth`` call of ``target`` ("module:function") whose arguments
    contain ``contains``, ``before`` or after the call runs."""

    target: str
    contains: str
    nth: int = 1
    before: bool = False

    def to_env(self) -> str:
        return json.dumps(asdict(self))


# child side -----
def _install(crash: CrashAt) -> None:
    """Wrap the target so the matching call ends the process with SIGKILL."""
    module_name, _, attr = crash.target.partition(":")
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    seen = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal seen
        hit = crash.contains in " ".join(map(str, (*args, *kwargs.values())))
        seen += hit
        if hit and seen == crash.nth and crash.before:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hit and seen == crash.nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, attr, wrapper)


def _child(step: str, day: dt.date) -> None:
    """The steps a test can crash: ``ingest`` (fetch + stage, as the day's ingest does) and
    ``publish`` (transform, validate, swap and load, as ``publish_days`` does)."""
    if os.environ.get(CRASH_ENV):
        _install(CrashAt(**json.loads(os.environ[CRASH_ENV])))
    from flows.extract import fetch_day
    from flows.lake import Lake
    from flows.settings import get_settings
    from flows.stage import stage_day

    settings = get_settings()
    lake = Lake(settings.lake_root)
    if step == "ingest":
        fetch_day(settings, lake, day)
        stage_day(lake, day)
    elif step == "publish":
        from flows.publish import publish_days

        publish_days(settings, lake, [day], f"crash-{os.getpid()}", 0)
    else:
        raise SystemExit(f"unknown step {step}")
    print("finished", flush=True)


# parent side -----
def child_env(env: dict[str, str], crash: CrashAt | None = None) -> dict[str, str]:
    out = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    out.pop(CRASH_ENV, None)
    if crash is not None:
        out[CRASH_ENV] = crash.to_env()
    return out


def start_step(step: str, day: dt.date, env: dict[str, str], crash: CrashAt | None = None):
    """Start the child running ``step`` for ``day``; stdout/stderr go to pipes."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), step, day.isoformat()],
        env=child_env(env, crash),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_step(
    step: str, day: dt.date, env: dict[str, str], crash: CrashAt | None = None, timeout=120
) -> subprocess.CompletedProcess:
    process = start_step(step, day, env, crash)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def kill_hard(process: subprocess.Popen) -> int:
    """SIGKILL the child and reap it (closing its pipes); returns its exit code (-9)."""
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    return process.returncode


# what a run left -----
def warehouse_snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every warehouse table (not load_audit), sorted by key."""
    with psycopg.connect(url) as conn:
        conn.execute("set time zone 'UTC'")
        return {
            t: conn.execute(f"select * from warehouse.{t} order by {key}").fetchall()  # noqa: S608
            for t, key in WAREHOUSE_TABLES.items()
        }


def load_audit(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select run_id, started_at, finished_at from warehouse.load_audit order by id"
        ).fetchall()


def parquet_rows(files: list[Path], drop: tuple[str, ...] = ()) -> list[tuple]:
    """All rows of the files (each must read whole), sorted, without the ``drop`` columns."""
    frames = [pl.read_parquet(f, hive_partitioning=False) for f in files]
    if not frames:
        return []
    frame = pl.concat(frames, how="vertical_relaxed")
    return sorted(frame.drop([c for c in drop if c in frame.columns]).rows(), key=repr)


def curated_snapshot(lake_root: Path) -> dict[str, list[tuple]]:
    curated = lake_root / "curated"
    return {
        table: parquet_rows(sorted((curated / table).rglob("*.parquet")))
        for table in WAREHOUSE_TABLES
    }


def events_snapshot(lake_root: Path) -> list[tuple]:
    """The staged events of every partition, without ingested_at (a wall-clock stamp) and
    source_key (an S3 key carries the bucket prefix, a local file only its name)."""
    files = sorted((lake_root / "events").rglob("*.parquet"))
    return parquet_rows(files, ("ingested_at", "source_key"))


def leftovers(lake_root: Path) -> list[str]:
    """Every temporary, journal or scratch file anywhere under the lake root."""
    from support_replay import leftovers as anywhere

    return anywhere(lake_root)


# waiting on what a run is doing -----
def wait_for(condition: Callable[[], object], what: str, timeout: float = 90) -> object:
    """Poll ``condition`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def blocked_loader(url: str) -> int | None:
    """The pid of a vdp backend of this database inside its transaction, waiting on a lock
    (PostgreSQL's own view of the blocked load, not a guess from elapsed time)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select pid from pg_stat_activity where application_name = 'vdp'"
            " and datname = current_database() and wait_event_type = 'Lock'"
            " and xact_start is not null"
        ).fetchone()
    return row[0] if row else None


class InThread:
    """Run ``target`` in a thread of this process; its exceptions are kept for the test."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.errors: list[BaseException] = []
        self._target = target
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.errors.append(exc)

    def join(self, timeout: float) -> list[BaseException]:
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the run did not end"
        return self.errors


# a download that hangs -----
class StallingS3Proxy(FaultyS3Proxy):
    """Serves the first ``pass_first`` object GETs whole; every later one gets its headers and
    half its body, then hangs until ``release`` is set (a download cut off mid-transfer)."""

    def __init__(self, upstream_url: str, pass_first: int) -> None:
        super().__init__(upstream_url, fail_first_n=0)
        self.pass_first = pass_first
        self.stalled = 0
        self.release = threading.Event()

    def decide(self, method: str, path: str) -> str | None:
        parts = urlsplit(path)
        key = unquote(parts.path).lstrip("/").partition("/")[2]
        with self._lock:
            self.requests += 1
            if method != "GET" or not key or "list-type" in parts.query:
                return None
            self.object_gets[key] += 1
            if sum(self.object_gets.values()) <= self.pass_first:
                return None
            self.stalled += 1
            return "stall"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler_class()
        proxy = self

        class Handler(base):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                stall = proxy.decide(self.command, self.path) == "stall"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                status, upstream, data = proxy.forward(self.command, self.path, headers, body)
                if not stall:
                    self._reply(status, upstream, data)
                    return
                self.send_response(status)
                for name, value in upstream:
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                proxy.release.wait(timeout=120)
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler


if __name__ == "__main__":
    _child(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))
