"""The warehouse server itself crashes mid-load: a private PostgreSQL (the lake's embedded
pgserver, never the machine's shared server) stopped with ``pg_ctl -m immediate`` while the
load waits inside its transaction, then started again, so PostgreSQL runs its own crash
recovery. The run fails in one line, the restarted server holds exactly what it held before
the run, and the next run ends where a clean run ends."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from support_crash import InThread, blocked_loader, wait_for
from support_replay import differences, lake_snapshot, leftovers, warehouse_snapshot

from flows.lake import Lake
from flows.warehouse import WarehouseError, start_embedded, stop_embedded

DAY = dt.date(2019, 6, 1)
pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow]


def _daily() -> dict:
    from flows.pipeline import daily_pipeline

    return daily_pipeline(DAY)


def _stop_immediately(lake: Lake) -> None:
    """What a power cut does to the server: every backend killed, no checkpoint written."""
    import pgserver

    user = "pgserver" if os.geteuid() == 0 else None
    pgserver.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=lake.warehouse_dir, user=user)


def _comparable(snapshot: dict) -> dict:
    """A state without what counts runs rather than data (one report and audit row a run)."""
    return {
        k: v for k, v in snapshot.items() if k not in ("validation/runs", "warehouse/load_audit")
    }


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Path]:
    """(full day, the day without its last object) as local source directories."""
    from flows.tools.generate import generate

    generate(str(tmp_path / "gen"), DAY, 1, orgs=2, vehicles=5, seed=5, quirk_rate=0.02,
             events_per_day=800)  # fmt: skip
    full, early = tmp_path / "gen" / "data", tmp_path / "early"
    early.mkdir()
    for path in sorted(full.iterdir())[:-1]:
        shutil.copy2(path, early / path.name)
    return full, early


def test_server_stopped_immediately_mid_load_then_the_next_run_ends_at_baseline(
    source, pg_url: str, tmp_path: Path, monkeypatch
) -> None:
    full, early = source
    monkeypatch.setenv("VDP_SOURCE_URL", str(full))
    monkeypatch.setenv("VDP_LAKE_ROOT", str(tmp_path / "baseline"))
    monkeypatch.setenv("VDP_WAREHOUSE_URL", pg_url)
    _daily()
    baseline = _comparable(lake_snapshot(tmp_path / "baseline") | warehouse_snapshot(pg_url))

    lake = Lake(tmp_path / "lake")
    monkeypatch.setenv("VDP_LAKE_ROOT", str(lake.root))
    monkeypatch.delenv("VDP_WAREHOUSE_URL")  # the lake's own embedded server
    monkeypatch.setenv("VDP_SOURCE_URL", str(early))
    try:
        _daily()
        url = start_embedded(lake)
        before = warehouse_snapshot(url)
        shutil.copy2(full / sorted(p.name for p in full.iterdir())[-1], early)
        with psycopg.connect(url) as locker:
            locker.execute("lock table warehouse.fact_vehicle_event in exclusive mode")
            run = InThread(_daily)
            wait_for(lambda: blocked_loader(url), "the load to block on the lock")
            _stop_immediately(lake)
            errors = run.join(timeout=120)
            with pytest.raises(psycopg.OperationalError):
                locker.execute("select 1")
        assert len(errors) == 1 and isinstance(errors[0], WarehouseError), errors
        message = str(errors[0])
        assert "\n" not in message and message.startswith("load of run"), message

        url = start_embedded(lake)  # PostgreSQL replays its WAL: the load never committed
        assert warehouse_snapshot(url) == before
        _daily()
        after = _comparable(lake_snapshot(lake.root) | warehouse_snapshot(url))
        assert differences(after, baseline) == []
        assert leftovers(lake.root) == []
    finally:
        stop_embedded(lake)
