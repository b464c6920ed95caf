"""Faults the pipeline must survive: a flaky or dead S3 endpoint, the process SIGKILLed while
downloading, staging or loading, PostgreSQL dropping the loader or unreachable, two runs of
one day at once, a full or read-only lake disk.

Every scenario runs the real code (moto over HTTP, real PostgreSQL, real Prefect API) and ends
the same way: the failure is one clear line, nothing half-written passes for complete, and the
next run leaves exactly the warehouse, curated tables and staged events that one clean run of
the same data leaves (the ``baseline``).

State "A" is the lake and warehouse after a clean run of the day *without* its last object;
that object then "arrives late", so the faulty run has real work to do (re-stage, re-transform,
re-load) and "as before" is a different state from the baseline.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from support_crash import (
    CrashAt,
    InThread,
    StallingS3Proxy,
    blocked_loader,
    curated_snapshot,
    events_snapshot,
    kill_hard,
    leftovers,
    load_audit,
    run_step,
    start_step,
    wait_for,
    warehouse_snapshot,
)
from support_faults import FaultyS3Proxy
from support_pipeline import database
from support_recovery import recover_lake
from support_replay import snapshot
from support_skips import skip_unless_required
from support_source import put_many

from flows import extract
from flows.extract import FetchError, fetch_day, needs_fetch
from flows.lake import Lake, LakeError, Manifest
from flows.settings import get_settings
from flows.source import SourceError, open_source
from flows.warehouse import WarehouseConnectionError, WarehouseError

DAY = dt.date(2019, 6, 1)
PUBLISHED = ("curated/", "state/", "warehouse/")
pytestmark = pytest.mark.usefixtures("prefect_backend")


# data, databases and states -----
@dataclass(frozen=True)
class Source:
    full: Path  # every object of the day
    early: Path  # all but the last one (state A's source)
    late_name: str

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self.full.iterdir())

    def deliver_late(self) -> None:
        shutil.copy2(self.full / self.late_name, self.early / self.late_name)


@dataclass(frozen=True)
class State:
    """A lake and warehouse to copy from, with the snapshots taken right after its run."""

    lake: Path
    url: str
    warehouse: dict
    curated: dict
    events: list
    published: dict  # curated tables, incremental state and warehouse, hashed whole


def _env(lake: Path, url: str, source_url: str, endpoint: str | None = None) -> dict[str, str]:
    env = {
        "VDP_LAKE_ROOT": str(lake),
        "VDP_WAREHOUSE_URL": url,
        "VDP_SOURCE_URL": source_url,
        "VDP_S3_ENDPOINT_URL": endpoint or "",
        "VDP_S3_ANONYMOUS": "false",
    }
    from prefect.settings import PREFECT_API_URL

    return {**env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def _apply(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        if name.startswith("VDP_"):
            monkeypatch.setenv(name, value)


def _daily() -> dict:
    from flows.pipeline import daily_pipeline

    return daily_pipeline(DAY)


def _run_clean(env: dict[str, str]) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        _apply(mp, env)
        return _daily()


def _state(lake: Path, url: str) -> State:
    return State(
        lake, url, warehouse_snapshot(url), curated_snapshot(lake), events_snapshot(lake),
        _published(lake, url),
    )  # fmt: skip


def _published(lake: Path, url: str) -> dict:
    """What a publish changes, whole: every curated table, the incremental state and every
    warehouse table (load_audit included), each part hashed."""
    return {k: v for k, v in snapshot(lake, url).items() if k.startswith(PUBLISHED)}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    """One generated day (32 objects, ~1,650 lines with the real-feed quirks)."""
    from flows.tools.generate import generate

    root = tmp_path_factory.mktemp("faults-source")
    generate(str(root / "gen"), DAY, 1, orgs=2, vehicles=6, seed=3, quirk_rate=0.02,
             events_per_day=1500)  # fmt: skip
    full = root / "gen" / "data"
    early = root / "early"
    names = sorted(p.name for p in full.iterdir())
    early.mkdir()
    for name in names[:-1]:
        shutil.copy2(full / name, early / name)
    return Source(full, early, names[-1])


@pytest.fixture(scope="module")
def baseline(source: Source, pg_server_url: str, tmp_path_factory) -> Iterator[State]:
    """One clean run over every object of the day: what every faulty scenario must end at."""
    lake = tmp_path_factory.mktemp("faults-baseline") / "lake"
    with database(pg_server_url) as url:
        summary = _run_clean(_env(lake, url, str(source.full)))
        assert summary["status"] == "succeeded"
        yield _state(lake, url)


@pytest.fixture(scope="module")
def state_a(source: Source, pg_server_url: str, tmp_path_factory) -> Iterator[State]:
    """A clean run over the day without its last object (the template of "as before")."""
    root = tmp_path_factory.mktemp("faults-a")
    shutil.copytree(source.early, root / "src")
    with database(pg_server_url) as url:
        _run_clean(_env(root / "lake", url, str(root / "src")))
        yield _state(root / "lake", url)


@dataclass
class Case:
    """A copy of state A for one test: its lake, warehouse URL and env; the late object is in
    its source directory already, so the next run has it to fetch."""

    lake: Path
    url: str
    env: dict[str, str]


@pytest.fixture
def case_a(state_a: State, source: Source, pg_server_url: str, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    shutil.copytree(state_a.lake, lake, symlinks=True)
    src = tmp_path / "src"
    shutil.copytree(source.full, src)
    with database(pg_server_url, template_url=state_a.url) as url:
        env = _env(lake, url, str(src))
        _apply(monkeypatch, env)
        yield Case(lake, env["VDP_WAREHOUSE_URL"], env)


def assert_like(baseline: State, lake: Path, url: str) -> None:
    """The lake and warehouse are exactly what the clean run left, with nothing left over."""
    assert warehouse_snapshot(url) == baseline.warehouse
    assert curated_snapshot(lake) == baseline.curated
    assert events_snapshot(lake) == baseline.events
    assert leftovers(lake) == []


def assert_as_before(state: State, baseline: State, case: Case) -> None:
    """After recovery alone (no new run, which would rebuild and hide a wrong recovery): the
    published state is state A's, whole; the day's events are state A's or the re-staged
    day's (a staging swap rolls back or forward), every file reads whole, nothing is left."""
    recover_lake(Lake(case.lake), case.url)
    assert _published(case.lake, case.url) == state.published
    assert events_snapshot(case.lake) in (state.events, baseline.events)
    assert leftovers(case.lake) == []


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# S3 faults -----
@pytest.fixture
def bucket_source(source: Source, s3_client, s3_bucket: str) -> str:
    """The full day in a moto bucket under data/; returns the source URL."""
    put_many(
        s3_client, s3_bucket, {f"data/{p.name}": p.read_bytes() for p in source.full.iterdir()}
    )
    return f"s3://{s3_bucket}/data/"


@pytest.mark.parametrize("mode", ["503", "slowdown", "drop"])
def test_flaky_s3_is_retried_and_nothing_is_duplicated(
    mode, baseline, bucket_source, moto_endpoint, pg_url, tmp_path, monkeypatch
) -> None:
    """Each object's first two GETs fail (botocore's retry, then ours); the run succeeds and
    the result equals the clean run: no object counted twice, no event staged twice."""
    monkeypatch.setattr(extract, "RETRY_BASE_SECONDS", 0.05)
    lake = tmp_path / "lake"
    with FaultyS3Proxy(moto_endpoint, fail_first_n=2, mode=mode) as proxy:
        _apply(monkeypatch, _env(lake, pg_url, bucket_source, proxy.url))
        summary = _daily()
    assert summary["fetch"]["fetched"] == summary["fetch"]["listed"] == 32
    assert proxy.faults == 2 * 32
    assert summary["stage"]["events"] == len(baseline.events)
    assert_like(baseline, lake, pg_url)


def test_dead_s3_fails_clearly_and_records_only_what_arrived(
    source, bucket_source, moto_endpoint, tmp_path, monkeypatch
) -> None:
    """One object never comes back (every GET 503s): one line names the failure, the manifest
    lists exactly the objects that are whole on disk, and the next run fetches only that one."""
    monkeypatch.setattr(extract, "RETRY_BASE_SECONDS", 0.01)
    lake = Lake(tmp_path / "lake")
    dead = source.names[3]
    with FaultyS3Proxy(moto_endpoint, 10**6, "503", key_contains=dead) as proxy:
        _apply(monkeypatch, _env(lake.root, "", bucket_source, proxy.url))
        with pytest.raises(FetchError) as failed:
            fetch_day(get_settings(), lake, DAY)
    assert "1 of 32 objects of 2019-06-01 failed to fetch" in one_line(failed.value)
    assert "ServiceUnavailable" in str(failed.value) and failed.value.transient
    manifest = Manifest.read(lake, DAY).entries
    names = sorted(entry["name"] for entry in manifest.values())
    assert names == sorted(set(source.names) - {dead})
    raw = lake.raw_day(DAY)
    assert sorted(p.name for p in raw.iterdir()) == names
    for entry in manifest.values():
        assert (raw / entry["name"]).read_bytes() == (source.full / entry["name"]).read_bytes()

    monkeypatch.setenv("VDP_S3_ENDPOINT_URL", moto_endpoint)
    again = fetch_day(get_settings(), lake, DAY)
    assert (again.fetched, again.skipped) == (1, 31)
    assert leftovers(lake.root) == []


def test_unreachable_s3_leaves_the_lake_untouched(bucket_source, tmp_path, monkeypatch) -> None:
    """Nothing listens on the endpoint: the listing fails in one line before any write."""
    lake = Lake(tmp_path / "lake")
    _apply(monkeypatch, _env(lake.root, "", bucket_source, "http://127.0.0.1:9"))
    with pytest.raises(SourceError) as failed:
        fetch_day(get_settings(), lake, DAY)
    assert one_line(failed.value).startswith("cannot reach S3 endpoint http://127.0.0.1:9")
    assert failed.value.transient
    assert not lake.root.exists()


# SIGKILL -----
def test_killed_during_download_nothing_partial_passes_for_fetched(
    baseline, source, bucket_source, moto_endpoint, pg_url, tmp_path, monkeypatch
) -> None:
    """The proxy serves 5 objects, then cuts the next downloads off mid-body; the child
    (2 download threads) is SIGKILLed while both hang. Whole files are on disk but the manifest
    was never written, so none is trusted: the next run fetches all 32 and ends at baseline."""
    lake = tmp_path / "lake"
    with StallingS3Proxy(moto_endpoint, pass_first=5) as proxy:
        env = _env(lake, pg_url, bucket_source, proxy.url) | {"VDP_FETCH_CONCURRENCY": "2"}
        child = start_step("ingest", DAY, env)
        try:
            wait_for(lambda: proxy.stalled >= 2, "two stalled downloads")
        finally:
            assert kill_hard(child) == -9
            proxy.release.set()
    raw = Lake(lake).raw_day(DAY)
    whole = [p for p in raw.iterdir() if not p.name.startswith(".")]
    assert len(whole) == 5
    assert all(p.read_bytes() == (source.full / p.name).read_bytes() for p in whole)
    assert len([p for p in raw.iterdir() if p.name.endswith(".part")]) == 2
    assert not Lake(lake).manifest_path(DAY).exists()
    _apply(monkeypatch, _env(lake, pg_url, bucket_source, moto_endpoint))
    listed = open_source(get_settings()).list_day(DAY)
    assert all(needs_fetch(obj, Manifest.read(Lake(lake), DAY), raw) for obj in listed)

    summary = _daily()
    assert summary["fetch"]["fetched"] == 32
    assert_like(baseline, lake, pg_url)


STAGE_CRASHES = {
    # Parquet written aside, killed before the swap's journal exists: the lake is untouched.
    "before-swap": CrashAt("os:replace", "_journal", before=True),
    # First old partition moved to its backup, new ones not yet in: the day is half swapped.
    "mid-swap": CrashAt("os:replace", "/events/date="),
    # Every new partition in place, backups not yet dropped (journal says "published").
    "before-commit": CrashAt("shutil:rmtree", "backup-stage-", before=True),
}


@pytest.mark.parametrize("point", STAGE_CRASHES)
def test_killed_during_staging_the_next_run_ends_at_baseline(
    point, baseline, state_a, case_a
) -> None:
    """The late object is fetched and the day re-staged in a child SIGKILLed at ``point``:
    the warehouse is as before, no Parquet is half written, and the next run ends at
    baseline (the half-done swap is undone or finished, never mixed with the new one)."""
    killed = run_step("ingest", DAY, case_a.env, STAGE_CRASHES[point])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert_as_before(state_a, baseline, case_a)
    _daily()
    assert_like(baseline, case_a.lake, case_a.url)


def test_publish_recovery_leaves_another_days_staging_swap_alone(tmp_path) -> None:
    """publish_days recovers under the publish lock while another day may be staging under
    its own lock: that day's swap (here published, not yet committed) is not publish's to undo."""
    from flows.lake import Swap, Txn, TxnKind, recover
    from flows.stage import recover_stage_swaps

    lake = Lake(tmp_path / "lake")
    old = lake.events_partition(DAY, DAY)
    old.mkdir(parents=True)
    (old / "part-0.parquet").write_bytes(b"old")
    new = tmp_path / "new"
    new.mkdir()
    staging = Swap(lake, Txn(TxnKind.STAGE, "inflight", DAY), {old: new})
    staging.publish()
    assert recover(lake, TxnKind.PUBLISH, lambda txn: False) == []
    assert staging.journal.exists() and not new.exists()
    assert recover_stage_swaps(lake, DAY) == [staging.txn.name]
    assert not staging.journal.exists() and not (old / "part-0.parquet").exists()


def _ingest_here(lake_root: Path) -> None:
    """Fetch and stage the day in this process (the late object included), as a run does."""
    from flows.stage import stage_day

    fetch_day(get_settings(), Lake(lake_root), DAY)
    stage_day(Lake(lake_root), DAY)


@contextmanager
def _table_locked(url: str, table: str) -> Iterator[psycopg.Connection]:
    """Hold EXCLUSIVE on a warehouse table: reads go on, the loader's delete/insert waits."""
    with psycopg.connect(url) as conn:
        conn.execute(f"lock table warehouse.{table} in exclusive mode")
        yield conn
        conn.rollback()


def _gone(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("select 1 from pg_stat_activity where pid = %s", [pid]).fetchone()
    return found is None


@pytest.mark.slow
def test_killed_during_the_warehouse_load_the_warehouse_is_as_before(
    baseline, state_a, case_a
) -> None:
    """Mechanism: the test holds EXCLUSIVE on fact_vehicle_event, so the child's load (one
    transaction; dimensions and periods already merged) blocks on its delete there. Once
    pg_stat_activity shows that backend waiting on the lock, the child is SIGKILLed. Its
    transaction never commits; the curated swap it published is rolled back by the next run."""
    _ingest_here(case_a.lake)
    audit_before = load_audit(case_a.url)
    with _table_locked(case_a.url, "fact_vehicle_event"):
        child = start_step("publish", DAY, case_a.env)
        try:
            pid = wait_for(lambda: blocked_loader(case_a.url), "the load to block on the lock")
        finally:
            assert kill_hard(child) == -9
        journals = list((case_a.lake / "_journal").glob("*.json"))
        assert [json.loads(j.read_text())["state"] for j in journals] == ["published"]
    wait_for(lambda: _gone(case_a.url, pid), "the killed loader's backend to end")
    assert load_audit(case_a.url) == audit_before
    assert_as_before(state_a, baseline, case_a)
    _daily()
    assert_like(baseline, case_a.lake, case_a.url)


@pytest.mark.slow
def test_killed_after_the_load_committed_the_swap_rolls_forward(baseline, case_a) -> None:
    """Killed between the warehouse commit and dropping the swap's backups (they are still
    there, so rolling back would be possible and wrong): the next run sees the run in
    load_audit and keeps the published curated tables, not the stale backup."""
    _ingest_here(case_a.lake)
    killed = run_step(
        "publish", DAY, case_a.env, CrashAt("shutil:rmtree", "backup-crash-", before=True)
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert any(run.startswith("crash-") for run, *_ in load_audit(case_a.url))
    assert warehouse_snapshot(case_a.url) == baseline.warehouse
    recover_lake(Lake(case_a.lake), case_a.url)  # alone: rolled forward, the backups dropped
    published = _published(case_a.lake, case_a.url)
    audit = "warehouse/load_audit"  # one row a run, so it differs from the baseline's
    assert {k: v for k, v in published.items() if k != audit} == {
        k: v for k, v in baseline.published.items() if k != audit
    }
    assert leftovers(case_a.lake) == []
    _daily()
    assert_like(baseline, case_a.lake, case_a.url)


# PostgreSQL faults -----
def test_warehouse_connection_lost_mid_load_fails_clearly_then_reloads(
    baseline, state_a, case_a
) -> None:
    """The loader's backend is terminated (what a PostgreSQL restart does to it) while it
    waits inside its transaction: the run fails in one line, the warehouse and curated tables
    are as before, and the next run loads."""
    with _table_locked(case_a.url, "fact_vehicle_event") as locker:
        run = InThread(_daily)
        pid = wait_for(lambda: blocked_loader(case_a.url), "the load to block on the lock")
        locker.execute("select pg_terminate_backend(%s)", [pid])
    errors = run.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], WarehouseError)
    assert "terminating connection" in one_line(errors[0])
    assert_as_before(state_a, baseline, case_a)
    assert curated_snapshot(case_a.lake) == state_a.curated
    assert leftovers(case_a.lake) == []
    _daily()
    assert_like(baseline, case_a.lake, case_a.url)


def test_unreachable_warehouse_fails_clearly_then_the_next_run_loads(
    baseline, state_a, case_a, monkeypatch
) -> None:
    """Nothing listens at the warehouse URL: after the task's retries (delays shortened here)
    the run fails naming the server, the curated swap is rolled back, the next run loads."""
    from flows import publish

    quick = publish.load_warehouse.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(publish, "load_warehouse", quick)
    monkeypatch.setenv("VDP_WAREHOUSE_URL", "postgresql://vdp@127.0.0.1:9/warehouse")
    with pytest.raises(WarehouseConnectionError) as failed:
        _daily()
    assert one_line(failed.value).startswith(
        "cannot connect to the warehouse at postgresql://vdp@127.0.0.1:9/warehouse"
    )
    assert curated_snapshot(case_a.lake) == state_a.curated
    assert leftovers(case_a.lake) == []
    monkeypatch.setenv("VDP_WAREHOUSE_URL", case_a.url)
    _daily()
    assert_like(baseline, case_a.lake, case_a.url)


# concurrency -----
def test_two_runs_of_one_day_at_once_take_turns(
    baseline, source, pg_url, tmp_path, monkeypatch
) -> None:
    """Two daily runs of the same day start together (two threads, one lake, one warehouse):
    both succeed, their loads do not overlap, and the result is the clean run's."""
    lake = tmp_path / "lake"
    _apply(monkeypatch, _env(lake, pg_url, str(source.full)))
    start = threading.Barrier(2)
    results: list[object] = []

    def run() -> None:
        start.wait()
        try:
            results.append(_daily()["status"])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == ["succeeded", "succeeded"]
    (_, start1, end1), (_, start2, end2) = load_audit(pg_url)
    assert end1 <= start2 or end2 <= start1
    assert_like(baseline, lake, pg_url)


# the lake's disk -----
@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str], None]]:
    """A tmpfs mounted for the lake root; yields ``remount(options)`` to resize or make it
    read-only. Skips when this machine does not let the test mount (not root, container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        skip_unless_required(
            f"cannot mount a tmpfs here: {made.stderr.strip()}", "VDP_REQUIRE_TMPFS"
        )

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)

    try:
        yield remount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_clearly_and_leaves_nothing_half_written(
    baseline, source, small_disk, pg_url, tmp_path, monkeypatch
) -> None:
    """A 200 kB lake disk fills up while the ~400 kB day downloads: one line names the lake
    fault, every manifest entry is a whole file, and after the disk grows the run completes."""
    lake = tmp_path / "disk" / "lake"
    _apply(monkeypatch, _env(lake, pg_url, str(source.full)))
    with pytest.raises(LakeError) as failed:
        _daily()
    assert "No space left on device" in one_line(failed.value)
    manifest = Manifest.read(Lake(lake), DAY).entries
    for entry in manifest.values():
        assert (Lake(lake).raw_day(DAY) / entry["name"]).stat().st_size == entry["size"]
    assert not (lake / "events").exists()
    small_disk("size=64m")
    _daily()
    assert_like(baseline, lake, pg_url)


def test_read_only_lake_fails_clearly_then_recovers(
    baseline, source, small_disk, pg_url, tmp_path, monkeypatch
) -> None:
    """The lake's filesystem turns read-only: the run stops at once with one line naming the
    lake root; once writable again, the next run completes."""
    small_disk("size=64m")
    lake = tmp_path / "disk" / "lake"
    lake.mkdir()
    _apply(monkeypatch, _env(lake, pg_url, str(source.full)))
    small_disk("ro")
    with pytest.raises(LakeError) as failed:
        _daily()
    assert "is not writable: Read-only file system" in one_line(failed.value)
    small_disk("rw")
    _daily()
    assert_like(baseline, lake, pg_url)
