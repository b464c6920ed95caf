"""Source listing and reading: day selection by name, paging, errors, S3 and local directories."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest
from support_source import count_by_day, empty_bucket, list_all, put_many

from flows.settings import Settings
from flows.source import (
    LocalSource,
    S3Source,
    SourceError,
    open_source,
    parse_source_day,
    redact_url,
)

DAY = dt.date(2019, 6, 1)
LINE = (
    b'{"event":"update","on":"vehicle","at":"2019-06-01T18:17:10.101Z","data":{"id":"v1",'
    b'"location":{"lat":52.45133,"lng":13.46045,"at":"2019-06-01T18:17:10.101Z"}},'
    b'"organization_id":"org-id"}\n'
)


def s3_settings(bucket: str, endpoint: str, *, anonymous: bool = False) -> Settings:
    return Settings(
        source_url=f"s3://{bucket}/data/", s3_endpoint_url=endpoint, s3_anonymous=anonymous
    )


def put(s3_client, bucket: str, key: str, body: bytes, *, public: bool = False) -> str:
    extra = {"ACL": "public-read"} if public else {}
    return s3_client.put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"].strip('"')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2019-06-01-15-17-4-events.json", DAY),  # the real naming scheme
        ("2019-06-01.json", DAY),  # a bare date is still a day
        ("2019-13-01-events.json", None),  # looks like a date but is not one
        ("README.md", None),  # no date at all: never selected
        ("x2019-06-01-events.json", None),  # the date must lead the name
        ("2019-6-1-events.json", None),  # not zero-padded, so not YYYY-MM-DD
    ],
)
def test_parse_source_day(name: str, expected: dt.date | None) -> None:
    assert parse_source_day(name) == expected


def test_redact_url_drops_user_info_and_query() -> None:
    assert redact_url("http://key:secret@minio.local:9000/x?token=t") == "http://minio.local:9000/x"


def test_list_day_selects_only_that_days_direct_children(s3_client, s3_bucket, moto_endpoint):
    keys = [
        "data/2019-06-01-15-17-4-events.json",
        "data/2019-06-01-15-17-10-events.json",
        "data/2019-06-01-23-59-59-events.json",
    ]
    etags = {key: put(s3_client, s3_bucket, key, LINE * (i + 1)) for i, key in enumerate(keys)}
    put(s3_client, s3_bucket, "data/2019-06-02-00-00-1-events.json", LINE)
    put(s3_client, s3_bucket, "data/README.md", b"not data")
    put(s3_client, s3_bucket, "data/2019-06-01/nested-2019-06-01.json", LINE)
    put(s3_client, s3_bucket, "other/2019-06-01-15-17-4-events.json", LINE)

    source = open_source(s3_settings(s3_bucket, moto_endpoint))
    listed = source.list_day(DAY)

    assert [o.key for o in listed] == sorted(keys)
    by_key = {o.key: o for o in listed}
    for i, key in enumerate(keys):
        assert by_key[key].size == len(LINE) * (i + 1)
        assert by_key[key].etag == etags[key]
        assert by_key[key].name == key.removeprefix("data/")
        assert by_key[key].source_day == DAY
    days, unmatched = count_by_day(list_all(source))
    assert days == {DAY: 3, dt.date(2019, 6, 2): 1}
    assert unmatched == 1


def test_list_day_pages_past_1000_objects(s3_client, s3_bucket, moto_endpoint):
    keys = [f"data/2019-06-01-00-00-{i:04d}-events.json" for i in range(1005)]
    put_many(s3_client, s3_bucket, dict.fromkeys(keys, b"x"))
    put(s3_client, s3_bucket, "data/2019-05-31-23-59-59-events.json", b"x")

    try:
        listed = open_source(s3_settings(s3_bucket, moto_endpoint)).list_day(DAY)
    finally:
        empty_bucket(s3_client, s3_bucket)  # in batches: the fixture deletes one at a time

    assert len(listed) == 1005
    assert [o.key for o in listed] == keys


def test_download_streams_bytes_and_anonymous_reads_public_objects(
    s3_client, s3_bucket, moto_endpoint, tmp_path
):
    body = os.urandom(3 * (1 << 20) + 17)  # more than one streaming chunk
    put(s3_client, s3_bucket, "data/2019-06-01-big-events.json", body, public=True)
    source = open_source(s3_settings(s3_bucket, moto_endpoint, anonymous=True))
    [obj] = source.list_day(DAY)

    source.download(obj, tmp_path / "copy")

    assert (
        hashlib.sha256((tmp_path / "copy").read_bytes()).digest() == hashlib.sha256(body).digest()
    )
    assert "anonymous" in source.describe()


def test_anonymous_read_of_private_object_is_access_denied(
    s3_client, s3_bucket, moto_endpoint, tmp_path
):
    put(s3_client, s3_bucket, "data/2019-06-01-private-events.json", LINE)
    source = open_source(s3_settings(s3_bucket, moto_endpoint, anonymous=True))
    [obj] = source.list_day(DAY)  # moto lets anonymous list a private bucket; real S3 does not

    with pytest.raises(SourceError, match=rf"^access denied to bucket '{s3_bucket}'") as info:
        source.download(obj, tmp_path / "copy")
    assert not info.value.transient
    assert "\n" not in str(info.value)


def test_missing_bucket_is_a_one_line_source_error(moto_endpoint):
    source = open_source(s3_settings("no-such-bucket-vdp", moto_endpoint))

    with pytest.raises(SourceError) as info:
        source.list_day(DAY)

    assert str(info.value) == f"bucket 'no-such-bucket-vdp' does not exist at {moto_endpoint}"


def test_unreachable_endpoint_is_a_one_line_source_error():
    source = open_source(s3_settings("bucket-x", "http://user:hunter2@127.0.0.1:1"))

    with pytest.raises(SourceError) as info:
        source.list_day(DAY)

    message = str(info.value)
    assert message.startswith("cannot reach S3 endpoint http://127.0.0.1:1: ")
    assert message.endswith("Connection refused")
    assert "\n" not in message and "hunter2" not in message
    assert "hunter2" not in source.describe()
    assert info.value.transient


def test_open_source_builds_s3_client_with_timeouts_retries_and_unsigned(moto_endpoint):
    from botocore import UNSIGNED

    source = open_source(s3_settings("bucket-x", moto_endpoint, anonymous=True))

    assert isinstance(source, S3Source)
    config = source.client.meta.config
    assert config.signature_version is UNSIGNED
    assert (config.connect_timeout, config.read_timeout) == (10, 60)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert source.describe() == f"s3://bucket-x/data/ at {moto_endpoint} (anonymous)"


def write_files(root: Path, names: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).write_bytes(LINE * (i + 1))


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_local_directory_source(tmp_path: Path, as_url: bool) -> None:
    root = tmp_path / "src"
    write_files(root, ["2019-06-01-b-events.json", "2019-06-01-a-events.json", "notes.txt"])
    write_files(root / "2019-06-01-subdir", [])
    url = f"file://{root}" if as_url else str(root)
    source = open_source(Settings(source_url=url))

    listed = source.list_day(DAY)

    assert isinstance(source, LocalSource)
    assert [o.key for o in listed] == ["2019-06-01-a-events.json", "2019-06-01-b-events.json"]
    assert [o.size for o in listed] == [2 * len(LINE), len(LINE)]
    stat = (root / "2019-06-01-a-events.json").stat()
    assert listed[0].etag == f"{stat.st_size}-{stat.st_mtime_ns}"
    assert count_by_day(list_all(source)) == ({DAY: 2}, 1)
    source.download(listed[0], tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == LINE * 2


def test_missing_local_directory_is_a_source_error(tmp_path: Path) -> None:
    source = open_source(Settings(source_url=str(tmp_path / "absent")))

    with pytest.raises(SourceError, match=r"^source directory .*absent does not exist: set"):
        source.list_day(DAY)


@pytest.mark.parametrize(
    ("errno_", "is_lake_fault"),
    [(28, True), (30, True), (5, False)],
    ids=["ENOSPC-lake-full", "EROFS-lake-read-only", "EIO-source-unreadable"],
)
def test_local_copy_blames_the_lake_for_full_or_read_only_disks(
    tmp_path: Path, monkeypatch, errno_: int, is_lake_fault: bool
):
    """sendfile reports ENOSPC with the *source* as filename; that must still read as a lake
    fault (OSError for the fetcher to turn into LakeError), not 'cannot read the source'."""
    import shutil

    from flows.source import SourceError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{DAY}-00-00-0-events.json").write_text("{}\n")
    source = LocalSource(tmp_path / "src")
    obj = source.list_day(DAY)[0]

    def failing_copy(src, dst):
        raise OSError(errno_, os.strerror(errno_), str(src))

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    expected = OSError if is_lake_fault else SourceError
    with pytest.raises(expected) as info:
        source.download(obj, tmp_path / "dest.json")
    assert isinstance(info.value, SourceError) is not is_lake_fault
