"""Alerts as code: Prefect automations on the (self-hosted) server that notify a webhook when a
run of the `daily` deployment ends Failed or Crashed, and when no daily run has completed for
26 hours. `vdp alerts` creates them after `prefect deploy --all`; running it again updates the
same automations (they are looked up by name), so there is never a second copy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flows.errors import VdpError
from flows.settings import Settings

DAILY = "daily-pipeline/daily"
HOOK_BLOCK = "vdp-alerts"
FAILED_AUTOMATION = "vdp-daily-failed"
STALE_AUTOMATION = "vdp-daily-stale"
STALE_AFTER = dt.timedelta(hours=26)


class AlertsError(VdpError):
    """The automations cannot be set up (no webhook configured, deployment or block missing)."""


@dataclass(frozen=True)
class AlertResult:
    name: str
    action: str  # "created" or "updated"
    automation_id: UUID


def notification_block_id(settings: Settings) -> UUID:
    """The notification block the automations send to: VDP_ALERT_BLOCK (``type/name`` of any
    Prefect notification block), else a webhook block saved from VDP_ALERT_WEBHOOK_URL."""
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if settings.alert_block:
        try:
            block = Block.load(settings.alert_block)
        except (ValueError, KeyError) as exc:
            message = f"cannot load notification block {settings.alert_block!r}: {exc}"
            raise AlertsError(message) from None
        return block._block_document_id
    if settings.alert_webhook_url is None:
        raise AlertsError(
            "no alert target: set VDP_ALERT_WEBHOOK_URL (a URL that takes a JSON POST) or "
            "VDP_ALERT_BLOCK (type/name of a Prefect notification block)"
        )
    hook = CustomWebhookNotificationBlock(
        name=HOOK_BLOCK,
        url=settings.alert_webhook_url.get_secret_value(),
        method="POST",
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
    )
    return hook.save(HOOK_BLOCK, overwrite=True)


def daily_automations(deployment_id: UUID, block_id: UUID) -> list[Any]:
    """The two automations, matched to the daily deployment's flow runs."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    runs = {"prefect.resource.id": "prefect.flow-run.*"}
    daily = {"prefect.resource.id": f"prefect.deployment.{deployment_id}"}
    failed = Automation(
        name=FAILED_AUTOMATION,
        description="A run of the daily deployment ended Failed or Crashed.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match=runs,
            match_related=daily,
            posture=Posture.Reactive,
            threshold=1,
            within=dt.timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="vdp: daily run {{ flow_run.name }} ended {{ flow_run.state.name }}",
                body="flow run {{ flow_run.name }} ({{ flow_run.id }}) of daily-pipeline/daily "
                "ended {{ flow_run.state.name }}: {{ flow_run.state.message }}",
            )
        ],
    )
    stale = Automation(
        name=STALE_AUTOMATION,
        description="No run of the daily deployment completed for 26 hours.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match=runs,
            match_related=daily,
            posture=Posture.Proactive,
            threshold=1,
            within=STALE_AFTER,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="vdp: no daily run completed for 26 hours",
                body="no run of daily-pipeline/daily completed in the last 26 hours; "
                "check the workers and `vdp status`",
            )
        ],
    )
    return [failed, stale]


def _upsert(client: Any, automation: Any) -> AlertResult:
    """Create the automation, or update the one of the same name (and drop extra copies)."""
    from prefect.events.schemas.automations import AutomationCore

    core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
    found = client.read_automations_by_name(name=automation.name)
    if not found:
        return AlertResult(automation.name, "created", client.create_automation(core))
    keep, *extra = sorted(found, key=lambda a: str(a.id))
    client.update_automation(automation_id=keep.id, automation=core)
    for copy in extra:
        client.delete_automation(automation_id=copy.id)
    return AlertResult(automation.name, "updated", keep.id)


def ensure_alerts(settings: Settings) -> list[AlertResult]:
    """Create or update the daily deployment's automations on the Prefect API in use."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    block_id = notification_block_id(settings)
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DAILY)
        except ObjectNotFound:
            raise AlertsError(
                f"deployment {DAILY} not found on the Prefect API: deploy first "
                "(prefect --no-prompt deploy --all), then run vdp alerts"
            ) from None
        return [_upsert(client, a) for a in daily_automations(deployment.id, block_id)]
