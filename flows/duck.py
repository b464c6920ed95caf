"""DuckDB connections as the stages open them: UTC session time, no progress bars, and a
memory limit with a spill directory on the lake's disk, so a large day spills instead of
failing (without a temp directory an in-memory DuckDB spills into the process's cwd)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect(
    memory_limit: str | None = None, temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection; dates of timestamps are UTC dates."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")  # bars go to stdout on ~1M rows
    if memory_limit:
        con.execute(f"set memory_limit = '{_quoted(memory_limit)}'")
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"set temp_directory = '{_quoted(str(temp_dir))}'")
    return con


def _quoted(text: str) -> str:
    return text.replace("'", "''")
