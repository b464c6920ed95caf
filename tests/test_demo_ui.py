"""`vdp demo --ui` as a newcomer runs it (a subprocess): it starts a Prefect server, runs the
demo against it, prints links whose artifact URL returns the run summary through the API and
whose run page headless Chromium renders with the run completed, keeps the server up until
Ctrl-C (SIGINT), then stops it; `vdp warehouse stop` stops the embedded PostgreSQL the demo
leaves running."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from support_browser import rendered_text

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, accept: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def _answers(api_url: str) -> bool:
    try:
        return _get(f"{api_url}/health")[0] == 200
    except OSError:
        return False


class Output:
    """Collects a process's stdout in a thread, so the test can wait for a line with a timeout."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while not any(marker in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    text = "".join(self.lines)[-4000:]
                    raise AssertionError(f"no {marker!r} in the demo output:\n{text}")
                self._new.wait(min(left, 1))
            return "".join(self.lines)

    def rest(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def _env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VDP_", "PREFECT_"))}
    return {
        **base,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "VDP_LAKE_ROOT": str(tmp_path / "lake"),
    }


def _vdp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_demo_ui_links_the_runs_and_stops_the_server_on_sigint(sample_dir, tmp_path: Path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(tmp_path)
    args = ["demo", "--ui", "--ui-port", str(port), "--days", "1", "--sample", str(sample_dir)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(demo.stdout)
    try:
        out = output.until("Press Ctrl-C", timeout=540)
        assert _answers(api)
        assert f"Prefect UI:  http://127.0.0.1:{port}/runs" in out
        assert "`vdp warehouse stop` stops it" in out
        days = re.findall(r"^  (\d{4}-\d{2}-\d{2})  run:     (\S+)$", out, re.M)
        assert [day for day, _ in days] == ["2019-06-01", "2019-06-02"]
        api_links = re.findall(r"\(API:    (\S+)\)", out)
        assert len(api_links) == 2
        for (day, run_page), link in zip(days, api_links, strict=True):
            status, body = _get(link)
            artifact = json.loads(body)
            assert status == 200 and artifact["key"] == f"run-summary-{day}"
            assert f"source day {day}" in artifact["data"] and "succeeded" in artifact["data"]
            run_id = run_page.rsplit("/", 1)[-1]
            assert artifact["flow_run_id"] == run_id
            run = json.loads(_get(f"{api}/flow_runs/{run_id}")[1])
            assert run["state"]["type"] == "COMPLETED"
            page = rendered_text(run_page)  # the run's page, as the browser renders it
            assert "Can't connect to Server API" not in page, page[:500]
            assert "daily-pipeline" in page and "Completed" in page, page[:500]
            assert run["name"] in page, page[:500]
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=180) == 0  # the server's shutdown is slow on a busy machine
        assert "demo: stopping the Prefect server" in output.rest()
        assert not _answers(api)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
    stopped = _vdp(env, "warehouse", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped the embedded PostgreSQL in ")
    again = _vdp(env, "warehouse", "stop")
    assert "is not running" in again.stdout
