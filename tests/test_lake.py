"""Lake mechanics on real directories: journaled swaps, crash recovery, scratch sweeping."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from flows.lake import (
    Lake,
    LakeError,
    Manifest,
    Swap,
    Txn,
    TxnKind,
    _undo,
    atomic_write_bytes,
    recover,
)


def _dir_with(path: Path, name: str, text: str) -> Path:
    path.mkdir(parents=True)
    (path / name).write_text(text)
    return path


def _contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())} if path.exists() else {}


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.ensure_writable()
    return lake


def _swap(lake: Lake, txn: str, kind: TxnKind = TxnKind.PUBLISH) -> tuple[Swap, Path, Path]:
    """Replace table a (exists) and create table b (absent) in one swap."""
    a, b = lake.curated_table("a"), lake.curated_table("b")
    _dir_with(a, "part-0.parquet", "old a")
    new_a = _dir_with(lake.tmp_dir / "new" / "a", "part-0.parquet", "new a")
    new_b = _dir_with(lake.tmp_dir / "new" / "b", "part-0.parquet", "new b")
    return Swap(lake, Txn(kind, txn), {a: new_a, b: new_b}), a, b


def test_publish_then_commit_leaves_only_the_new_content(lake: Lake) -> None:
    swap, a, b = _swap(lake, "t1")
    swap.publish()
    swap.commit()
    assert _contents(a) == {"part-0.parquet": "new a"}
    assert _contents(b) == {"part-0.parquet": "new b"}
    assert not list(lake.journal_dir.glob("*.json"))
    assert not (lake.tmp_dir / "backup-t1").exists()


def test_rollback_restores_old_content_and_removes_created_dirs(lake: Lake) -> None:
    swap, a, b = _swap(lake, "t2")
    swap.publish()
    swap.rollback()
    assert _contents(a) == {"part-0.parquet": "old a"}
    assert not b.exists()


def test_recover_rolls_back_a_swap_killed_half_way(lake: Lake) -> None:
    """A crash after a's move but before b's: the journal says 'prepared'; recovery undoes it."""
    swap, a, b = _swap(lake, "t3")
    json_path = swap.journal
    swap.publish()
    state = json.loads(json_path.read_text())
    state["state"] = "prepared"  # as if the process died before marking it published
    json_path.write_text(json.dumps(state))
    assert recover(lake, TxnKind.PUBLISH, is_committed=lambda txn: True) == ["t3"]
    assert _contents(a) == {"part-0.parquet": "old a"}
    assert not b.exists()


@pytest.mark.parametrize(
    ("committed", "expected_a"),
    [(True, "new a"), (False, "old a")],
    ids=["warehouse-committed-rolls-forward", "warehouse-not-committed-rolls-back"],
)
def test_recover_follows_the_warehouse_for_published_swaps(
    lake: Lake, committed: bool, expected_a: str
) -> None:
    swap, a, _ = _swap(lake, "t4")
    swap.publish()
    recover(lake, TxnKind.PUBLISH, is_committed=lambda txn: committed)
    assert _contents(a) == {"part-0.parquet": expected_a}
    assert not list(lake.journal_dir.glob("*.json"))


def test_recover_keeps_what_an_interrupted_rollback_put_back(lake: Lake) -> None:
    """A rollback killed after it moved the backups back but before it removed the journal
    (still 'published'): a second undo must keep the restored old content, not delete it as
    if it were the new content moved in."""
    swap, a, b = _swap(lake, "t6")
    swap.publish()
    _undo(lake, json.loads(swap.journal.read_text())["moves"])  # rollback's first half
    assert recover(lake, TxnKind.PUBLISH, is_committed=lambda txn: False) == ["t6"]
    assert _contents(a) == {"part-0.parquet": "old a"}
    assert not b.exists()


def test_recover_drops_a_journal_killed_before_its_rename(lake: Lake) -> None:
    """A kill between writing a journal's temporary file and renaming it leaves
    ``_journal/.<txn>.json.<hex>.tmp``; recovery removes it for the txns it owns only."""
    lake.journal_dir.mkdir(parents=True)
    mine = lake.journal_dir / ".t7.json.0123abcd.tmp"
    other = lake.journal_dir / ".stage-2019-06-01-x.json.89abcdef.tmp"
    for path in (mine, other):
        path.write_text('{"state": "prep')
    assert recover(lake, TxnKind.PUBLISH) == []
    assert not mine.exists() and other.exists()


def test_recover_leaves_swaps_it_does_not_own(lake: Lake) -> None:
    swap, a, _ = _swap(lake, "other", TxnKind.STAGE)
    swap.publish()
    assert recover(lake, TxnKind.PUBLISH) == []
    assert swap.journal.exists()
    assert _contents(a) == {"part-0.parquet": "new a"}


def test_sweep_scratch_removes_only_the_given_prefix(lake: Lake) -> None:
    _dir_with(lake.tmp_dir / "run-dead1", "x", "1")
    _dir_with(lake.tmp_dir / "stage-2019-06-01-abc", "x", "1")
    assert lake.sweep_scratch("run") == 1
    assert not (lake.tmp_dir / "run-dead1").exists()
    assert (lake.tmp_dir / "stage-2019-06-01-abc").exists()


def test_atomic_write_never_leaves_temporary_files(lake: Lake) -> None:
    target = lake.root / "raw" / "x.json"
    atomic_write_bytes(target, b"payload")
    assert target.read_bytes() == b"payload"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_unwritable_root_is_a_one_line_lake_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LakeError, match="is not writable") as info:
        Lake(blocker / "lake").ensure_writable()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "txn",
    [
        Txn(TxnKind.PUBLISH, "local-0123abcd"),
        Txn(TxnKind.STAGE, "89abcdef0123", dt.date(2019, 6, 1)),
        Txn(TxnKind.FETCH, day=dt.date(2019, 6, 1)),
    ],
    ids=["publish-named-by-its-run-id", "stage-of-a-day", "fetch-of-a-day"],
)
def test_a_journal_name_gives_back_its_transaction(lake: Lake, txn: Txn) -> None:
    """Recovery tells whose journal it reads from its name alone (a journal killed before its
    rename cannot be read), so the name must carry the kind and the day."""
    assert Txn.parse(lake.journal(txn).stem) == txn


@pytest.mark.parametrize(
    ("content", "reason"),
    [('{"key": {"name": "x"', "Expecting"), ('["not", "entries"]', "not a JSON object")],
    ids=["truncated-json", "not-an-object-of-entries"],
)
def test_a_damaged_manifest_is_a_lake_error_never_an_empty_one(
    lake: Lake, content: str, reason: str
) -> None:
    """Read as empty, it would re-fetch pruned objects and stage rows under other keys."""
    day = dt.date(2019, 6, 1)
    lake.manifest_path(day).parent.mkdir(parents=True)
    lake.manifest_path(day).write_text(content)
    with pytest.raises(LakeError, match=f"manifest .* is unreadable .*{reason}.*delete it"):
        Manifest.read(lake, day)


def test_a_missing_manifest_is_an_empty_one(lake: Lake) -> None:
    manifest = Manifest.read(lake, dt.date(2019, 6, 1))
    assert manifest.entries == {}
    assert manifest.path == lake.manifest_path(dt.date(2019, 6, 1))
