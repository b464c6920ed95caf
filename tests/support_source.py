"""Bulk helpers for seeding and emptying a moto bucket quickly (tests of the source stage)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from flows.source import LocalSource, S3Source, SourceObject


def put_many(s3_client, bucket: str, objects: dict[str, bytes], *, workers: int = 8) -> None:
    """Upload many objects concurrently (boto3 clients are thread-safe)."""
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda item: s3_client.put_object(Bucket=bucket, Key=item[0], Body=item[1]),
                objects.items(),
            )
        )


def empty_bucket(s3_client, bucket: str) -> None:
    """Delete every object in batches of 1,000 (the s3_bucket fixture deletes one at a time)."""
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def count_by_day(objects: list[SourceObject]) -> tuple[dict[dt.date, int], int]:
    """Objects per source day, and how many names carry no day (``unmatched``)."""
    days: dict[dt.date, int] = {}
    unmatched = 0
    for obj in objects:
        if obj.source_day is None:
            unmatched += 1
        else:
            days[obj.source_day] = days.get(obj.source_day, 0) + 1
    return dict(sorted(days.items())), unmatched


def list_all(source: LocalSource | S3Source) -> list[SourceObject]:
    """Every object of the source, whatever day its name carries (or none)."""
    return source._list(source.prefix if isinstance(source, S3Source) else "")
