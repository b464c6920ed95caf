"""The frames the quality gate validates: the run's staged events and its curated facts, with
the derived columns (period length, average speed) that let one-table expectations check them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows.errors import VdpError
from flows.lake import RunOutput
from flows.tables import EVENTS, PARTITION_KEYS

EVENTS_SUITE = "events"
EVENTS_SCHEMA = EVENTS.polars_schema


class ValidationInputError(VdpError):
    """Data that validation needs (a curated table) is missing."""


def _parquet_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.rglob("*.parquet")) if path.is_dir() else [path])
    return files


def read_events(events_paths: list[Path]) -> pl.DataFrame:
    """The run's staged events: partition directories or Parquet files (columns are inside the
    files, so hive parsing is off). No partition: an empty frame of the contract's schema."""
    files = _parquet_files(events_paths)
    if not files:
        return pl.DataFrame(schema=EVENTS_SCHEMA)
    # files staged before a column was added lack it: it reads as null there
    scan = pl.scan_parquet(
        files, hive_partitioning=False, schema=EVENTS_SCHEMA, missing_columns="insert"
    )
    return scan.collect()


# Whole tables validated as the rows the run created or changed: the others passed before.
CHANGED_ROWS_ONLY = ("fact_break",)


def read_curated(curated_dir: Path, table: str) -> pl.DataFrame:
    """A curated table as the run wrote it; a partitioned one (and fact_break) as the rows the
    run recomputed (``_changes/``), which exist, possibly empty, even when no partition was
    touched."""
    only_changes = table in PARTITION_KEYS or table in CHANGED_ROWS_ONLY
    output = RunOutput(Path(curated_dir))
    found = output.changes(table) if only_changes else output.table(table)
    if only_changes and not found.is_dir():
        found = output.table(table)
    files = _parquet_files([found]) if found.exists() else []
    if not files:
        raise ValidationInputError(
            f"curated table {found.relative_to(curated_dir)} not found under {curated_dir}; "
            "run the transform first"
        )
    return pl.read_parquet(files, hive_partitioning=False)


def _hours() -> pl.Expr:
    """finish_at - start_at in hours (a period's or a break's length)."""
    return (pl.col("finish_at") - pl.col("start_at")).dt.total_microseconds() / 3.6e9


def with_period_checks(periods: pl.DataFrame) -> pl.DataFrame:
    """Periods plus ``period_hours``, so the suite can bound a period's length."""
    return periods.with_columns(period_hours=_hours())


def with_vehicle_checks(vehicles: pl.DataFrame, periods: pl.DataFrame) -> pl.DataFrame:
    """Vehicle facts joined to their period: the average speed over the period's length is the
    plausibility ceiling for a distance, computed here because GX checks one table at a time."""
    bounds = periods.select(
        "operating_period_id",
        "start_at",
        "finish_at",
        has_period=pl.lit(True),
        period_hours=_hours(),
    ).unique("operating_period_id", keep="first")
    joined = vehicles.join(bounds, on="operating_period_id", how="left")
    dist, hours = pl.col("distance_km"), pl.col("period_hours")
    # a period that does not finish after it starts fails the period suite; no speed for it
    speed = pl.when(hours > 0).then(dist / hours)
    within = (pl.col("start_at") <= pl.col("first_location_at")) & (
        pl.col("last_location_at") <= pl.col("finish_at")
    )
    return joined.with_columns(
        has_period=pl.col("has_period").fill_null(False),
        avg_speed_kmh=speed,
        points_within_period=within,
    ).drop("start_at", "finish_at")


def with_break_checks(breaks: pl.DataFrame, periods: pl.DataFrame) -> pl.DataFrame:
    """Breaks plus ``break_hours`` and ``overlaps_period`` (a live period of the break's
    organization overlaps it), because GX checks one table at a time.

    A period overlaps a break when it starts by the break's finish and finishes at or after its
    start, so some period overlaps it exactly when the latest finish among the periods that
    start by the break's finish reaches its start: one as-of join on the periods sorted by
    start with their running latest finish, not every break against every period."""
    bounds = ("start_at", "finish_at")
    live = (
        periods.filter(~pl.col("is_deleted") & pl.all_horizontal(pl.col(bounds).is_not_null()))
        .select("organization_id", period_start="start_at", reach="finish_at")
        .sort("period_start")
        .with_columns(pl.col("reach").cum_max().over("organization_id"))
    )
    overlapping = (
        breaks.select("break_id", "organization_id", *bounds)
        .filter(pl.all_horizontal(pl.col(bounds).is_not_null()))
        .sort("finish_at")
        .join_asof(
            live,
            left_on="finish_at",
            right_on="period_start",
            by="organization_id",
            strategy="backward",
            check_sortedness=False,  # both sides sorted just above; with `by` it cannot check
        )
        .filter(pl.col("reach") >= pl.col("start_at"))
        .get_column("break_id")
    )
    return breaks.with_columns(
        break_hours=_hours(), overlaps_period=pl.col("break_id").is_in(overlapping.implode())
    )


def build_frames(
    suite_names: list[str],
    events_paths: list[Path],
    curated_dir: Path,
    period_ids: list[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """One frame per suite: staged events for ``events``, else the curated table of that name.
    With ``period_ids`` (the periods the run recomputed) curated facts keyed by period are cut
    to those periods: untouched rows passed when they were published, and a duplicate key still
    shows because every row of a recomputed id is kept. Keeps cost flat as history grows."""
    frames: dict[str, pl.DataFrame] = {}
    periods = None
    for name in suite_names:
        if name == EVENTS_SUITE:
            frames[name] = read_events(events_paths)
            continue
        table = _only_periods(read_curated(curated_dir, name), period_ids)
        if name == "fact_operating_period":
            periods = table
            table = with_period_checks(table)
        elif name == "fact_vehicle_operating_period":
            if periods is None:
                periods = _only_periods(
                    read_curated(curated_dir, "fact_operating_period"), period_ids
                )
            table = with_vehicle_checks(table, periods)
        elif name == "fact_break":
            all_periods = read_curated(curated_dir, "fact_operating_period")
            table = with_break_checks(table, all_periods)
        frames[name] = table
    return frames


def _only_periods(table: pl.DataFrame, period_ids: list[str] | None) -> pl.DataFrame:
    if period_ids is None or "operating_period_id" not in table.columns:
        return table
    return table.filter(pl.col("operating_period_id").is_in(period_ids))
