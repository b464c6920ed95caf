"""Operations against a real PostgreSQL and a real lake: `vdp backup` / `vdp restore` give the
same answer and manifests in an empty database and lake; `vdp prune` removes only raw files
that staging has read, keeps manifests, and a re-run neither re-fetches nor loses events."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from flows.cli import main
from flows.extract import fetch_day
from flows.lake import Lake, atomic_write_json
from flows.load import fetch_answer, load_run
from flows.ops import OpsError, find_tool, prune_raw
from flows.settings import Settings
from flows.stage import StageError, stage_day
from flows.warehouse import connect, migrate
from tests.support_warehouse import D1, D2, base_curated, snapshot

PERIODS = ["p1", "p2", "p3", "p4"]


@pytest.fixture
def empty_db(pg_server_url: str) -> Iterator[str]:
    """A second fresh database on the same server (the restore target)."""
    name = f"vdp_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    info = conninfo.conninfo_to_dict(pg_server_url) | {"dbname": name}
    yield conninfo.make_conninfo(**info)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture
def loaded(pg_url: str, tmp_path: Path) -> tuple[str, Lake]:
    """A loaded warehouse and a lake holding its curated tables and one day's manifest."""
    lake = Lake(tmp_path / "lake")
    base_curated().write(lake.curated_dir)
    atomic_write_json(
        lake.manifest_path(D1),
        {"data/2019-06-01-a.json": {"size": 3, "etag": "e1", "fetched_at": "x", "name": "a"}},
    )
    with connect(pg_url) as conn:
        migrate(conn)
    for run_id, days in (("run-1", [D1]), ("run-2", [D1, D2])):
        load_run(
            pg_url,
            lake.curated_dir,
            run_id=run_id,
            partition_date=D1,
            period_ids=PERIODS,
            event_dates=days,
        )
    return pg_url, lake


def vdp(monkeypatch, url: str, lake: Lake, *argv: str) -> int:
    monkeypatch.setenv("VDP_WAREHOUSE_URL", url)
    monkeypatch.setenv("VDP_LAKE_ROOT", str(lake.root))
    return main(list(argv))


def lake_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("target", ["backup.tar", "backup-dir"])
def test_restore_into_an_empty_database_gives_the_same_answer_and_manifests(
    loaded, empty_db: str, tmp_path: Path, monkeypatch, capsys, target: str
) -> None:
    url, lake = loaded
    out = tmp_path / target
    assert vdp(monkeypatch, url, lake, "backup", str(out)) == 0
    assert "backed up 9 warehouse tables" in capsys.readouterr().out  # fact_break is the 9th
    assert out.is_file() == target.endswith(".tar")

    fresh = Lake(tmp_path / "fresh-lake")
    assert vdp(monkeypatch, empty_db, fresh, "restore", str(out)) == 0
    assert f"into {fresh.root}" in capsys.readouterr().out

    assert snapshot(empty_db) == snapshot(url)
    assert fetch_answer(empty_db) == fetch_answer(url) != []
    for rel in ("raw/_manifests", "curated"):
        assert lake_files(fresh.root / rel) == lake_files(lake.root / rel) != {}
    assert fresh.duckdb_path.is_file()  # analysts can query the restored lake at once
    with connect(empty_db) as conn:
        assert migrate(conn) == []  # the migration record came back too
        conn.execute("set role vdp_analyst")  # and the analyst grants
        assert conn.execute("select count(*) from warehouse.fact_operating_period").fetchone()[0]


def test_restore_refuses_a_warehouse_that_is_not_empty(
    loaded, tmp_path: Path, monkeypatch, capsys
) -> None:
    url, lake = loaded
    assert vdp(monkeypatch, url, lake, "backup", str(tmp_path / "b.tar")) == 0
    before = snapshot(url)
    code = vdp(monkeypatch, url, Lake(tmp_path / "other"), "restore", str(tmp_path / "b.tar"))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "already has a schema 'warehouse': restore into an empty database" in err
    assert snapshot(url) == before


def test_backup_never_overwrites_and_restore_rejects_a_non_backup(
    loaded, empty_db: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    url, lake = loaded
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert vdp(monkeypatch, url, lake, "backup", str(existing)) == 1
    assert "already exists: choose a new path" in capsys.readouterr().err
    assert lake_files(existing) == {"keep.txt": b"mine"}

    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as archive:
        archive.add(existing / "keep.txt", arcname="keep.txt")
    assert vdp(monkeypatch, empty_db, Lake(tmp_path / "l2"), "restore", str(bogus)) == 1
    assert "is not a vdp backup" in capsys.readouterr().err


def test_the_server_matching_client_tool_is_preferred() -> None:
    path16, major16 = find_tool("pg_dump", 16)
    assert major16 == 16 and "pgserver" in str(path16)  # the embedded server's own pg_dump
    path15, major15 = find_tool("pg_restore", 15)
    assert major15 == 15 and path15.name == "pg_restore"
    with pytest.raises(OpsError, match="no pg_dump for PostgreSQL 99 or newer"):
        find_tool("pg_dump", 99)


def test_backup_error_never_shows_the_password(tmp_path: Path, monkeypatch, capsys) -> None:
    url = "postgresql://vdp:Backup-s3cret@127.0.0.1:1/vdp"
    assert vdp(monkeypatch, url, Lake(tmp_path / "l"), "backup", str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "cannot connect to the warehouse at postgresql://vdp:***@127.0.0.1:1/" in err
    assert "Backup-s3cret" not in err and not (tmp_path / "b").exists()


# retention --------------------------------------------------------------------------------------
def day_lines(day: dt.date, vehicle: str, count: int) -> str:
    at = f"{day.isoformat()}T10:00:{{:02d}}Z"
    rows = [
        {
            "event": "update",
            "on": "vehicle",
            "at": at.format(i),
            "data": {"id": vehicle, "location": {"lat": 52.0, "lng": 13.0 + i, "at": at.format(i)}},
            "organization_id": "org",
        }
        for i in range(count)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_prune_removes_only_staged_raw_files_of_old_days_and_keeps_manifests(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    old, unstaged, recent = (today - dt.timedelta(days=n) for n in (10, 9, 1))
    source, lake = tmp_path / "source", Lake(tmp_path / "lake")
    source.mkdir()
    settings = Settings(source_url=str(source), lake_root=lake.root)
    for day in (old, unstaged, recent):
        (source / f"{day.isoformat()}-a.json").write_text(day_lines(day, "v1", 3))
        fetch_day(settings, lake, day, progress=lambda _: None)
        if day != unstaged:
            stage_day(lake, day)
    (source / f"{old.isoformat()}-late.json").write_text(day_lines(old, "v2", 2))
    fetch_day(settings, lake, old, progress=lambda _: None)  # arrived after staging
    gone = lake.raw_day(old) / f"{old.isoformat()}-a.json"
    size = gone.stat().st_size

    monkeypatch.setenv("VDP_LAKE_ROOT", str(lake.root))
    assert main(["prune", "--raw-older-than", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"removed {gone}",
        f"pruned 1 raw files ({size:,} bytes) of source days before "
        f"{today - dt.timedelta(days=3)}; kept 2 not yet staged",
    ]
    assert not gone.exists()
    kept = {p for p in lake_files(lake.raw_dir) if not p.startswith("_manifests")}
    assert kept == {
        f"source_day={old}/{old}-late.json",
        f"source_day={unstaged}/{unstaged}-a.json",
        f"source_day={recent}/{recent}-a.json",
    }
    manifest = json.loads(lake.manifest_path(old).read_text())
    assert set(manifest) == {f"{old}-a.json", f"{old}-late.json"}
    assert "pruned_at" in manifest[f"{old}-a.json"]
    assert "pruned_at" not in manifest[f"{old}-late.json"]

    again = fetch_day(settings, lake, old, progress=lambda _: None)
    assert (again.fetched, again.skipped) == (0, 2)  # the manifest still records the pruned file
    with pytest.raises(StageError, match="removed by `vdp prune`; re-staging it would drop"):
        stage_day(lake, old)  # loud, never a silent loss of the pruned file's events
    assert prune_raw(lake, 3).removed == []  # nothing left that is safe to remove


def test_prune_rejects_a_negative_age(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VDP_LAKE_ROOT", str(tmp_path / "lake"))
    assert main(["prune", "--raw-older-than", "-1"]) == 1
    assert "must be 0 or more days" in capsys.readouterr().err
