"""Binary COPY encoding: the rows PostgreSQL reads back equal the frame, value by value, and
equal what the CSV path loads (nulls, empty and non-ASCII text, pre-2000 times, NaN)."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import psycopg
import pytest
from psycopg import sql

from flows.load import _copy, _copy_binary
from flows.pgbinary import UnsupportedColumnType, binary_slices, encode_rows

UTC = dt.UTC
COLUMNS = (
    "event_id text, vehicle_id text, organization_id text, event text, at timestamptz, "
    "lat double precision, lng double precision, location_at timestamptz, "
    "is_valid_point boolean, event_date date"
)


def _frame() -> pl.DataFrame:
    at = [
        dt.datetime(2019, 6, 1, 3, 0, 34, 69000, tzinfo=UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2000, 1, 1, tzinfo=UTC),
        dt.datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
    ]
    return pl.DataFrame(
        {
            "event_id": ["e1", "", "ë-ü-東京", "x" * 300],
            "vehicle_id": ["v1", "v2", None, "v4"],
            "organization_id": ["o", "o", "o", "o"],
            "event": ["register", "update", "update", "deregister"],
            "at": at,
            "lat": [52.4794, None, float("nan"), -90.0],
            "lng": [13.28525, None, -0.0, 180.0],
            "location_at": [at[0], None, at[2], at[3]],
            "is_valid_point": [True, False, None, True],
            "event_date": [dt.date(2019, 6, 1), dt.date(1970, 1, 1), None, dt.date(2038, 1, 19)],
        },
        schema_overrides={"at": pl.Datetime("us", "UTC"), "location_at": pl.Datetime("us", "UTC")},
    )


def _table(conn: psycopg.Connection, name: str) -> sql.Identifier:
    conn.execute(sql.SQL("create table {} (" + COLUMNS + ")").format(sql.Identifier(name)))
    return sql.Identifier(name)


def _rows(conn: psycopg.Connection, name: str) -> list[tuple]:
    query = sql.SQL("select * from {} order by event_id").format(sql.Identifier(name))
    return conn.execute(query).fetchall()


def test_binary_copy_reads_back_every_value(pg_url: str) -> None:
    frame = _frame()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        _copy_binary(conn, _table(conn, "b"), frame)
        rows = _rows(conn, "b")
    by_id = {row[0]: row for row in rows}
    assert sorted(by_id) == sorted(frame["event_id"].to_list())
    first = by_id["e1"]
    assert first[1:4] == ("v1", "o", "register")
    assert first[4] == dt.datetime(2019, 6, 1, 3, 0, 34, 69000, tzinfo=UTC)
    assert (first[5], first[6], first[8], first[9]) == (
        52.4794,
        13.28525,
        True,
        dt.date(2019, 6, 1),
    )
    empty = by_id[""]
    assert empty[4] == dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert (empty[5], empty[6], empty[7], empty[9]) == (None, None, None, dt.date(1970, 1, 1))
    unicode = by_id["ë-ü-東京"]
    assert unicode[1] is None and unicode[8] is None and unicode[9] is None
    assert math.isnan(unicode[5]) and unicode[6] == 0.0
    assert by_id["x" * 300][4] == dt.datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC)


def test_binary_copy_loads_what_csv_copy_loads(pg_url: str) -> None:
    frame = pl.concat([_frame()] * 3).with_columns(
        event_id=pl.col("event_id") + pl.int_range(pl.len()).cast(pl.String)
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _copy_binary(conn, _table(conn, "b"), frame)
        _copy(conn, _table(conn, "c"), frame)
        diff = conn.execute(
            "select (select count(*) from (table b except all table c) x), "
            "(select count(*) from (table c except all table b) y), (select count(*) from b)"
        ).fetchone()
    assert diff == (0, 0, 12)


def test_slices_frame_the_stream_and_split_rows_evenly() -> None:
    frame = _frame()
    slices = list(binary_slices(frame, 3))
    assert slices[0] == b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    assert slices[-1] == b"\xff\xff"
    assert b"".join(slices[1:-1]) == encode_rows(frame)
    assert slices[1][:2] == (10).to_bytes(2, "big")
    assert encode_rows(frame.clear()) == b""


def test_an_unmapped_column_type_is_refused() -> None:
    with pytest.raises(UnsupportedColumnType, match="column n has type Int64"):
        encode_rows(pl.DataFrame({"n": [1, 2]}))
