"""Stage a source day: raw JSON lines -> typed, deduplicated Parquet events plus quarantine.

Lines are split in Python with numpy over the raw bytes (exact line numbers; invalid UTF-8
or a huge line cannot derail a CSV reader), then parsed and classified in DuckDB. The new
partitions are written aside and swapped in with one journaled ``Swap``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from prefect import task

from flows import duck
from flows.checkpoints import checkpoint
from flows.errors import VdpError
from flows.lake import Lake, Manifest, Swap, Txn, TxnKind, recover
from flows.logs import run_logger

SQL_DIR = Path(__file__).parent / "sql"
BOM = b"\xef\xbb\xbf"
NEWLINE = 10
LINES_SCHEMA = pa.schema(
    [
        ("row_no", pa.int64()),
        ("source_key", pa.dictionary(pa.int32(), pa.string())),
        ("line_number", pa.int64()),
        ("line", pa.large_string()),
        ("bad_utf8", pa.bool_()),
    ]
)
READ_THREADS = 2
STAGE_TIMEOUT_SECONDS = 3600
# zstd level 1: a fifth less CPU than the default level 3 for ~8% larger files
PARQUET_OPTIONS = "format parquet, compression zstd, compression_level 1"


class StageError(VdpError):
    """A source day cannot be staged (no raw data, unreadable raw file)."""


@dataclass
class StageSummary:
    """What staging one source day produced; lines = events + duplicates + quarantined."""

    source_day: dt.date
    files: int = 0
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    event_dates: dict[dt.date, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: dates as ISO strings, seconds rounded to milliseconds."""
        out = asdict(self)
        out["source_day"] = self.source_day.isoformat()
        out["event_dates"] = {d.isoformat(): n for d, n in sorted(self.event_dates.items())}
        out["seconds"] = round(self.seconds, 3)
        return out


# raw files and lines ----------------------------------------------------------------------
def raw_files(lake: Lake, day: dt.date) -> list[tuple[str, Path]]:
    """(source key, path) of every raw file of the day, ordered by source key (the manifest
    gives each file's key; a file it does not list keeps its name)."""
    raw_dir = lake.raw_day(day)
    if not raw_dir.is_dir():
        raise StageError(f"no raw data for source day {day} at {raw_dir}: fetch the day first")
    manifest = Manifest.read(lake, day)
    paths = [p for p in raw_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
    _refuse_pruned(manifest, day, {p.name for p in paths})
    keys = manifest.keys_by_name()
    return sorted((keys.get(p.name, p.name), p) for p in paths)


def _refuse_pruned(manifest: Manifest, day: dt.date, present: set[str]) -> None:
    """Re-staging a day whose raw files `vdp prune` removed would drop their events."""
    pruned = manifest.pruned_missing(present)
    if pruned:
        raise StageError(
            f"source day {day} has {len(pruned)} raw files removed by `vdp prune`; re-staging "
            "it would drop their events: put the raw files back, or delete their pruned_at in "
            f"{manifest.path} to fetch them again"
        )


def line_offsets(data: bytes) -> np.ndarray:
    """Start offset of every line plus the end of the last; a line keeps its terminator.

    A leading UTF-8 BOM is skipped; a final newline does not start an extra empty line.
    """
    start = len(BOM) if data.startswith(BOM) else 0
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == NEWLINE) + 1
    offsets = np.concatenate((np.array([start], dtype=np.int64), ends.astype(np.int64)))
    if offsets[-1] != len(data):
        offsets = np.append(offsets, np.int64(len(data)))
    return offsets


def _decode_each(data: bytes, offsets: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Slow path for a file with invalid UTF-8: decode line by line, flagging bad lines."""
    texts, bad = [], []
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        chunk = data[start:end]
        try:
            texts.append(chunk.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            texts.append(chunk.decode("utf-8", errors="replace"))
            bad.append(True)
    return pa.array(texts, type=pa.large_string()), np.array(bad, dtype=bool)


def split_lines(data: bytes) -> tuple[pa.Array, np.ndarray]:
    """The file's lines as an Arrow string array (zero-copy over ``data`` when it is valid
    UTF-8) and a flag per line marking invalid UTF-8 (decoded with U+FFFD)."""
    offsets = line_offsets(data)
    count = len(offsets) - 1
    lines = pa.Array.from_buffers(
        pa.large_string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        return _decode_each(data, offsets)
    return lines, np.zeros(count, dtype=bool)


def _file_lines(path: Path) -> tuple[pa.Array, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StageError(f"cannot read raw file {path}: {exc.strerror or exc}") from exc
    return split_lines(data)


def read_lines(files: list[tuple[str, Path]]) -> pa.Table:
    """Arrow table ``lines`` (row_no, source_key, line_number, line, bad_utf8) in file order;
    files are read and split on two threads (numpy and file reads release the GIL)."""
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        split = list(pool.map(_file_lines, [path for _, path in files]))
    counts = np.array([len(lines) for lines, _ in split], dtype=np.int64)
    total = int(counts.sum())
    keys = pa.array([key for key, _ in files], pa.string())
    file_no = np.repeat(np.arange(len(files), dtype=np.int32), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns = [
        pa.array(np.arange(total, dtype=np.int64)),
        pa.DictionaryArray.from_arrays(pa.array(file_no), keys),
        pa.array(np.arange(total, dtype=np.int64) - starts + 1),
        pa.chunked_array([lines for lines, _ in split], pa.large_string()),
        pa.array(np.concatenate([bad for _, bad in split] or [np.zeros(0, dtype=bool)])),
    ]
    return pa.Table.from_arrays(columns, schema=LINES_SCHEMA)


# DuckDB -----------------------------------------------------------------------------------
@cache
def _sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def classify_lines(
    lines: pa.Table, memory_limit: str | None = None, temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB connection holding table ``parsed`` in input order: one row per line,
    its typed fields or first rejection reason, and whether it repeats an earlier event.
    With a memory limit and a temp directory (on the lake's disk) a large day spills there."""
    con = duck.connect(memory_limit, temp_dir)
    con.execute(_sql("stage_macros"))
    con.register("lines", lines)
    con.execute(f"create table parsed as {_sql('stage_parse_lines')}")
    con.unregister("lines")
    _recheck_lenient(con)
    con.execute(_sql("stage_mark_duplicates"))
    return con


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def is_strict_json(text: str) -> bool:
    """True when ``text`` is JSON per RFC 8259 (no NaN/Infinity, no trailing commas)."""
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _recheck_lenient(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's JSON reader accepts NaN, Infinity and trailing commas; the few lines that look
    like that are checked strictly here and rejected as invalid_json when they are not JSON."""
    suspects = con.sql("select row_no, raw_line from parsed where is_lenient").fetchall()
    rejected = [row_no for row_no, text in suspects if not is_strict_json(text)]
    if rejected:
        con.execute(
            "update parsed set reason = 'invalid_json' where row_no in (select unnest($rows))",
            {"rows": rejected},
        )


def _copy_to(
    con: duckdb.DuckDBPyConnection, query: str, target: Path, params: dict[str, Any]
) -> None:
    """Write a query's rows to one zstd Parquet file."""
    path = str(target).replace("'", "''")
    con.execute(f"copy ({query}) to '{path}' ({PARQUET_OPTIONS})", params)


def _write_events(
    con: duckdb.DuckDBPyConnection, out: Lake, params: dict[str, Any]
) -> dict[dt.date, Path]:
    """Write one part-0.parquet per event date into the events partitions of the source day
    under ``out`` (laid out as the lake); returns their dirs. A plain filtered scan of
    ``parsed`` keeps input order without a sort."""
    dates = con.sql(
        "select distinct event_date from parsed where reason is null and not is_duplicate"
    ).fetchall()
    written = {}
    for (event_date,) in sorted(dates):
        target = out.events_partition(event_date, params["source_day"])
        target.mkdir(parents=True)
        date_params = {**params, "event_date": event_date}
        _copy_to(con, _sql("stage_events"), target / "part-0.parquet", date_params)
        written[event_date] = target
    return written


def _write_quarantine(
    con: duckdb.DuckDBPyConnection, out_dir: Path, params: dict[str, Any]
) -> None:
    """Write the rejected lines (possibly none) to ``out_dir``/part-0.parquet."""
    out_dir.mkdir(parents=True)
    _copy_to(con, _sql("stage_quarantine"), out_dir / "part-0.parquet", params)


def _count(con: duckdb.DuckDBPyConnection, summary: StageSummary) -> None:
    """Fill the summary from ``parsed`` and check that every line read
    is exactly one event, duplicate or quarantined line."""
    reasons = con.sql("select reason, count(*) from parsed group by reason").fetchall()
    accepted = dict(reasons).pop(None, 0)
    summary.quarantine_reasons = {r: n for r, n in sorted(reasons, key=str) if r is not None}
    summary.quarantined = sum(summary.quarantine_reasons.values())
    per_date = con.sql(
        "select event_date, count(*) from parsed"
        " where reason is null and not is_duplicate group by 1"
    ).fetchall()
    summary.event_dates = dict(sorted(per_date))
    summary.events = sum(summary.event_dates.values())
    summary.duplicates = con.sql("select count(*) from parsed where is_duplicate").fetchall()[0][0]
    if accepted != summary.events + summary.duplicates or summary.lines != (
        summary.events + summary.duplicates + summary.quarantined
    ):
        raise AssertionError(f"stage counts do not add up for {summary.source_day}: {summary}")


# publish ----------------------------------------------------------------------------------
def recover_stage_swaps(lake: Lake, day: dt.date) -> list[str]:
    """Finish a staging of ``day`` that a killed run left half swapped, before staging again:
    a swap whose journal says published is kept (its new partitions are whole), any other is
    undone. Call it holding the day's lock, as staging does."""
    return recover(lake, TxnKind.STAGE, lambda txn: True, day=day)


def _publish(lake: Lake, day: dt.date, events: dict[dt.date, Path], quarantine: Path) -> None:
    """Swap in the day's new partitions in one journaled step; old partitions of the day that
    the new output lacks are removed. A failure puts the old partitions back."""
    moves: dict[Path, Path | None] = {old: None for old in lake.events_partitions_of(day)}
    for event_date, new_dir in events.items():
        moves[lake.events_partition(event_date, day)] = new_dir
    moves[lake.quarantine_day(day)] = quarantine
    swap = Swap(lake, Txn(TxnKind.STAGE, uuid.uuid4().hex[:12], day), moves)
    try:
        swap.publish()
    except BaseException:
        if swap.journal.exists():
            swap.rollback()
        raise
    swap.commit()


def stage_day(
    lake: Lake,
    day: dt.date,
    *,
    ingested_at: dt.datetime | None = None,
    memory_limit: str | None = None,
) -> StageSummary:
    """Parse every raw file of a source day into events and quarantine partitions, replacing
    whatever an earlier staging of the day produced."""
    started = time.perf_counter()
    lake.ensure_writable()
    stamp = ingested_at or dt.datetime.now(dt.UTC)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    recover_stage_swaps(lake, day)
    scratch_prefix = Txn(TxnKind.STAGE, day=day).name
    lake.sweep_scratch(scratch_prefix)  # left by a killed staging of the day
    files = raw_files(lake, day)
    lines = read_lines(files)
    summary = StageSummary(day, files=len(files), lines=lines.num_rows)
    params = {"ingested_at": stamp, "source_day": day}
    with lake.scratch(scratch_prefix) as scratch:
        con = classify_lines(lines, memory_limit, scratch / "_spill")
        del lines
        out = Lake(scratch)
        try:
            events = _write_events(con, out, params)
            _write_quarantine(con, out.quarantine_day(day), params)
            _count(con, summary)
            checkpoint("stage.written")
            _publish(lake, day, events, out.quarantine_day(day))
        finally:
            con.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _as_date(day: dt.date | str) -> dt.date:
    if isinstance(day, dt.datetime):
        return day.date()
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(day)
    except ValueError as exc:
        raise StageError(f"source day {day!r} is not a date (expected YYYY-MM-DD)") from exc


@task(name="stage-source-day", timeout_seconds=STAGE_TIMEOUT_SECONDS, retries=0)
def stage_source_day(
    lake_root: str, day: dt.date | str, memory_limit: str | None = None
) -> dict[str, Any]:
    """Prefect task: stage one source day and log a one-line summary."""
    summary = stage_day(Lake(Path(lake_root)), _as_date(day), memory_limit=memory_limit)
    run_logger(__name__).info(
        "staged %s: %d files, %d lines -> %d events, %d duplicates, %d quarantined %s in %.2f s",
        summary.source_day,
        summary.files,
        summary.lines,
        summary.events,
        summary.duplicates,
        summary.quarantined,
        summary.quarantine_reasons or "",
        summary.seconds,
    )
    return summary.as_dict()
