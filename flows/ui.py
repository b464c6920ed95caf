"""`vdp demo --ui`: the demo against a Prefect server with its UI on 127.0.0.1, so a newcomer
sees the runs and artifacts it just made. A server already answering on the port is reused
(and left running); one started here runs until Ctrl-C and is stopped then."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.errors import VdpError

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
STARTUP_TIMEOUT_S = 120


class UiError(VdpError):
    """The Prefect server for the UI could not be started or reached."""


@dataclass
class UiServer:
    url: str
    process: subprocess.Popen | None  # None: an existing server was reused

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def alive(self) -> bool:
        return self.process.poll() is None if self.process else answers(self.api_url)


def answers(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310 (an http URL built here)
            return response.status == 200
    except OSError:
        return False


def _prefect_command() -> list[str]:
    beside = Path(sys.executable).with_name("prefect")
    found = str(beside) if beside.is_file() else shutil.which("prefect")
    return [found] if found else [sys.executable, "-m", "prefect"]


def _start(port: int, log_path: Path) -> UiServer:
    url = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "PREFECT_UI_API_URL": f"{url}/api",  # what the browser calls; default assumes 4200
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*_prefect_command(), "server", "start", "--host", HOST, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches vdp, which stops the server itself
        )
    server = UiServer(url, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not answers(server.api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise UiError(f"the Prefect server on {url} did not start; see {log_path}")
        time.sleep(0.5)
    return server


def stop(server: UiServer) -> None:
    """Stop a server started here (its whole process group); a reused one is left alone."""
    if server.process is None or server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@contextmanager
def prefect_ui(port: int, log_path: Path) -> Iterator[UiServer]:
    """A Prefect API with its UI on 127.0.0.1:port, used by every run inside the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://{HOST}:{port}"
    server = UiServer(url, None) if answers(f"{url}/api") else _start(port, log_path)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        stop(server)


def run_links(server: UiServer, days: list[dt.date]) -> list[tuple[dt.date, str, str, str]]:
    """(day, run page, summary artifact page, summary artifact API URL) of each day's newest
    run-summary artifact on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter
    from prefect.client.schemas.filters import ArtifactCollectionFilterKey as Key

    keys = [f"run-summary-{day.isoformat()}" for day in days]
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=Key(any_=keys))
        )
    by_key = {a.key: a for a in latest}
    links = []
    for day, key in zip(days, keys, strict=True):
        found = by_key.get(key)
        if found is not None:
            links.append(
                (
                    day,
                    f"{server.url}/runs/flow-run/{found.flow_run_id}",
                    f"{server.url}/artifacts/artifact/{found.latest_id}",
                    f"{server.api_url}/artifacts/{found.latest_id}",
                )
            )
    return links


def wait_for_interrupt(server: UiServer) -> None:
    """Keep the server up until Ctrl-C (SIGINT) or SIGTERM, or until it exits by itself.
    SIGINT is handled even when inherited as ignored (a shell's background job)."""
    handlers = {
        sig: signal.signal(sig, signal.default_int_handler)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while server.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
