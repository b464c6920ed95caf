"""`vdp status`: is the data fresh? Reads the warehouse's load_audit (newest loaded source day,
last load), the lake (newest event, quarantine shares of recent source days) and, when
PREFECT_API_URL is set, the last daily run's outcome. Stale data is an error, so cron or any
monitor can act on the exit code. Never prints a secret."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from flows.errors import VdpError
from flows.lake import Lake
from flows.settings import Settings
from flows.warehouse import connect, read_sql, redact, warehouse_url

DAILY_FLOW = "daily-pipeline"


class StaleData(VdpError):
    """The newest loaded source day is further behind today than allowed."""


@dataclass
class QuarantineDay:
    source_day: dt.date
    quarantined: int
    events: int

    @property
    def share(self) -> float:
        lines = self.quarantined + self.events
        return self.quarantined / lines if lines else 0.0


@dataclass
class Status:
    warehouse: str
    today: dt.date
    max_lag_days: int
    newest_source_day: dt.date | None = None
    loads: int = 0
    last_load: dict[str, Any] | None = None
    newest_event_at: dt.datetime | None = None
    last_run: dict[str, Any] | None = None
    quarantine_over: list[QuarantineDay] = field(default_factory=list)
    quarantine_threshold: float = 0.0

    @property
    def lag_days(self) -> int | None:
        return (self.today - self.newest_source_day).days if self.newest_source_day else None

    @property
    def stale(self) -> bool:
        return self.lag_days is None or self.lag_days > self.max_lag_days

    def reason(self) -> str:
        """The one-line verdict for stderr when stale."""
        if self.newest_source_day is None:
            return f"stale: no source day loaded yet into the warehouse at {self.warehouse}"
        return (
            f"stale: newest loaded source day {self.newest_source_day} is {self.lag_days} "
            f"days behind {self.today} (--max-lag-days {self.max_lag_days})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["quarantine_over"] = [
            {**asdict(q), "share": round(q.share, 6)} for q in self.quarantine_over
        ]
        data.update(lag_days=self.lag_days, stale=self.stale)
        return json.loads(json.dumps(data, default=_iso))


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def read_loads(url: str) -> dict[str, Any]:
    """The row of select_load_status.sql, or {} when nothing was ever migrated or loaded."""
    with connect(url) as conn:
        found = conn.execute("select to_regclass('warehouse.load_audit')").fetchone()
        if found is None or found[0] is None:
            return {}
        cursor = conn.execute(read_sql("select_load_status.sql"))
        columns = [c.name for c in cursor.description or []]
        row = cursor.fetchone()
    return dict(zip(columns, row, strict=True)) if row else {}


def _configured_url(settings: Settings, lake: Lake) -> str | None:
    """The warehouse to read; None for an embedded one that was never created (nothing is
    started or created just to report that nothing was loaded)."""
    if settings.warehouse_url is None and not lake.warehouse_dir.is_dir():
        return None
    return warehouse_url(settings, lake)


def newest_event_at(lake: Lake) -> dt.datetime | None:
    """The newest event time in the lake: only the newest event-date partition is read."""
    from flows import duck

    dates = lake.events_date_dirs()
    if not dates:
        return None
    con = duck.connect()
    files = [str(f) for f in sorted(dates[-1].glob("*/*.parquet"))]
    row = con.execute('select max("at") from read_parquet($files)', {"files": files}).fetchall()
    return row[0][0] if row else None


def _rows(paths: list) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def quarantine_days(lake: Lake, days: int) -> list[QuarantineDay]:
    """Quarantined lines and staged events of the ``days`` newest staged source days (row
    counts from Parquet footers, so the cost does not grow with the lake's history)."""
    staged = list(lake.quarantine_days().items())
    found = []
    for day, part in staged[-days:] if days > 0 else []:
        events = [f for p in lake.events_partitions_of(day) for f in p.glob("*.parquet")]
        found.append(QuarantineDay(day, _rows(sorted(part.glob("*.parquet"))), _rows(events)))
    return found


def last_daily_run() -> dict[str, Any] | None:
    """The latest started daily run on the Prefect API in PREFECT_API_URL (None when unset:
    asking would start a temporary server that knows no runs)."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[DAILY_FLOW])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    if not runs:
        return {"state": None}
    run = runs[0]
    return {
        "name": run.name,
        "flow_run_id": str(run.id),
        "state": run.state.name if run.state else None,
        "started_at": run.start_time,
        "ended_at": run.end_time,
        "message": " ".join((run.state.message or "").split()) if run.state else "",
    }


def collect_status(
    settings: Settings,
    *,
    max_lag_days: int = 2,
    today: dt.date | None = None,
    quarantine_threshold: float = 0.05,
    recent_days: int = 7,
) -> Status:
    """Every figure `vdp status` shows, read from the warehouse, the lake and Prefect."""
    lake = Lake(settings.lake_root)
    url = _configured_url(settings, lake)
    status = Status(
        warehouse=redact(url) if url else f"embedded, not created yet ({lake.warehouse_dir})",
        today=today or dt.datetime.now(dt.UTC).date(),
        max_lag_days=max_lag_days,
        quarantine_threshold=quarantine_threshold,
    )
    loads = read_loads(url) if url else {}
    status.newest_source_day = loads.get("newest_source_day")
    status.loads = loads.get("loads") or 0
    if loads.get("last_run_id"):
        status.last_load = {
            "run_id": loads["last_run_id"],
            "flow_run_id": loads["last_flow_run_id"],
            "source_day": loads["last_source_day"],
            "finished_at": loads["last_finished_at"],
        }
    status.newest_event_at = newest_event_at(lake)
    recent = quarantine_days(lake, recent_days)
    status.quarantine_over = [q for q in recent if q.share > quarantine_threshold]
    status.last_run = last_daily_run()
    return status


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def format_status(status: Status) -> str:
    """The short table `vdp status` prints."""
    lag = "-" if status.lag_days is None else f"{status.lag_days} day(s) behind {status.today}"
    verdict = "STALE" if status.stale else "fresh"
    load = status.last_load
    run = status.last_run
    if run is None:
        run_text = "unknown (PREFECT_API_URL is not set)"
    elif run.get("state") is None:
        run_text = "no daily run on the Prefect API yet"
    else:
        run_text = (
            f"{run['state']} at {_when(run['ended_at'] or run['started_at'])} ({run['name']})"
        )
        if run["state"] != "Completed" and run.get("message"):
            run_text += f": {run['message'][:160]}"
    over = ", ".join(f"{q.source_day} ({q.share:.1%})" for q in status.quarantine_over)
    rows = [
        ("warehouse", status.warehouse),
        (
            "newest source day",
            f"{status.newest_source_day or '-'} ({lag}; {verdict}, max {status.max_lag_days})",
        ),
        ("newest event", _when(status.newest_event_at)),
        (
            "last load",
            f"source day {load['source_day']} at {_when(load['finished_at'])} "
            f"({status.loads} loads)"
            if load
            else "none",
        ),
        ("last daily run", run_text),
        (f"quarantine > {status.quarantine_threshold:.1%}", over or "none in recent days"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
