"""Alerts as code on a real `prefect server`: after `prefect deploy --all` and `vdp alerts`, a
failing run of the daily deployment (executed by a real worker) makes a real HTTP receiver on
127.0.0.1 get one request naming the flow run; running `vdp alerts` again leaves one copy of
each automation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_deployments import POOL, ROOT, _prefect, prefect_server  # noqa: F401 (fixture)

from flows.alerts import DAILY, FAILED_AUTOMATION, STALE_AFTER, STALE_AUTOMATION

EMPTY_DAY = "2019-06-02"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on a free local port; yields its URL and the JSON bodies it got."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "json": json.loads(body or b"null")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _vdp_alerts(env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "alerts"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def _automations(api_url: str) -> dict[str, list]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            found = await client.read_automations()
    by_name: dict[str, list] = {}
    for automation in found:
        by_name.setdefault(automation.name, []).append(automation)
    return by_name


async def _daily_run(api_url: str) -> tuple[object, object]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DAILY)
            run = await client.create_flow_run_from_deployment(
                deployment.id, parameters={"date": EMPTY_DAY}
            )
    return deployment, run


async def _read_run(api_url: str, run_id) -> object:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return await client.read_flow_run(run_id)


@pytest.mark.slow
def test_failed_daily_run_notifies_the_webhook_once(
    prefect_server: dict[str, str],  # noqa: F811 (the imported fixture)
    receiver: tuple[str, list[dict]],
    tmp_path: Path,
    pg_url: str,
) -> None:
    url, received = receiver
    env = {**prefect_server, "VDP_ALERT_WEBHOOK_URL": url}
    api = env["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    _prefect(env, "--no-prompt", "deploy", "--all")
    first = _vdp_alerts(env)
    assert [line.split(" (")[0] for line in first] == [
        f"created automation {FAILED_AUTOMATION}",
        f"created automation {STALE_AUTOMATION}",
    ]
    second = _vdp_alerts(env)
    assert [line.split(" (")[0] for line in second] == [
        f"updated automation {FAILED_AUTOMATION}",
        f"updated automation {STALE_AUTOMATION}",
    ]
    automations = asyncio.run(_automations(api))
    assert {name: len(copies) for name, copies in automations.items()} == {
        FAILED_AUTOMATION: 1,
        STALE_AUTOMATION: 1,
    }
    deployment, run = asyncio.run(_daily_run(api))
    stale = automations[STALE_AUTOMATION][0].trigger
    assert stale.posture == "Proactive" and stale.within == STALE_AFTER
    assert stale.expect == {"prefect.flow-run.Completed"}
    assert stale.match_related.model_dump() == {
        "prefect.resource.id": f"prefect.deployment.{deployment.id}"
    }

    (tmp_path / "source").mkdir()  # a feed that delivered nothing: the run fails
    worker_env = {
        **env,
        "VDP_SOURCE_URL": str(tmp_path / "source"),
        "VDP_LAKE_ROOT": str(tmp_path / "lake"),
        "VDP_WAREHOUSE_URL": pg_url,
    }
    _prefect(worker_env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)
    finished = asyncio.run(_read_run(api, run.id))
    assert finished.state.is_failed(), finished.state
    assert f"no objects for source day {EMPTY_DAY}" in finished.state.message

    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # a second (duplicate) notification would arrive within this
    assert len(received) == 1, received
    body = received[0]["json"]
    assert body["subject"] == f"vdp: daily run {finished.name} ended Failed"
    assert f"flow run {finished.name} ({finished.id})" in body["text"]
    assert f"no objects for source day {EMPTY_DAY}" in body["text"]


@pytest.mark.slow
def test_stale_automation_fires_when_no_daily_run_completes(
    prefect_server: dict[str, str],  # noqa: F811 (the imported fixture)
    receiver: tuple[str, list[dict]],
) -> None:
    """The proactive trigger as vdp alerts defines it, with a 30 s window instead of 26 h, for
    a deployment that never completes a run: the server itself sends the notification."""
    import datetime as dt
    import uuid

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.alerts import daily_automations

    url, received = receiver
    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        hook = CustomWebhookNotificationBlock(
            name="stale-test", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        )
        block_id = hook.save("stale-test", overwrite=True)
        stale = daily_automations(uuid.uuid4(), block_id)[1]
        stale.name, stale.trigger.within = "stale-test", dt.timedelta(seconds=30)
        with get_client(sync_client=True) as client:
            client.create_automation(
                AutomationCore(**stale.model_dump(exclude={"id", "owner_resource"}))
            )
        started = time.monotonic()
        while not received and time.monotonic() - started < 120:
            time.sleep(1)
    assert len(received) == 1, received
    assert time.monotonic() - started >= 30  # not before the window has passed
    assert received[0]["json"]["subject"] == "vdp: no daily run completed for 26 hours"
