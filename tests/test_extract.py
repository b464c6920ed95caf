"""The raw zone over a real moto S3 server: incremental fetch, manifest, retries through a
fault-injecting HTTP proxy, errors that leave the lake untouched, and the real sample."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from support_faults import FaultyS3Proxy
from support_source import empty_bucket, put_many

from flows import extract
from flows.extract import (
    FetchError,
    fetch_day,
    fetch_new_objects,
    fetch_object,
    list_source_objects,
)
from flows.lake import Lake, LakeError, Manifest
from flows.settings import Settings
from flows.source import SourceError, SourceObject, open_source

DAY = dt.date(2019, 6, 1)
LINES = [
    b'{"event":"create","on":"operating_period","at":"2019-06-01T18:17:04.086Z","data":'
    b'{"id":"op_1","start":"2019-06-01T18:17:04.079Z","finish":"2019-06-01T18:22:04.079Z"},'
    b'"organization_id":"org-id"}\n',
    b'{"event":"update","on":"vehicle","at":"2019-06-01T18:17:10.101Z","data":{"id":"v1",'
    b'"location":{"lat":52.45133,"lng":13.46045,"at":"2019-06-01T18:17:10.101Z"}},'
    b'"organization_id":"org-id"}\n',
]
OBJECTS = {
    "data/2019-06-01-15-17-4-events.json": LINES[0] + LINES[1],
    "data/2019-06-01-15-17-5-events.json": LINES[1] * 3,
    "data/2019-06-01-15-17-6-events.json": LINES[0],
}


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Our per-object backoff is 0.5 s, 1 s, 2 s in production; tests only need its order."""
    monkeypatch.setattr(extract, "RETRY_BASE_SECONDS", 0.01)


def seed(s3_client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)


def settings_for(bucket: str, endpoint: str, **extra) -> Settings:
    return Settings(
        source_url=f"s3://{bucket}/data/", s3_endpoint_url=endpoint, s3_anonymous=False, **extra
    )


def raw_bytes(lake: Lake, key: str) -> bytes:
    return (lake.raw_day(DAY) / key.rpartition("/")[2]).read_bytes()


def test_fetch_is_incremental_and_refetches_changed_objects(
    s3_client, s3_bucket, moto_endpoint, lake_root
):
    seed(s3_client, s3_bucket, OBJECTS)
    seed(s3_client, s3_bucket, {"data/2019-06-02-00-00-1-events.json": LINES[0]})
    settings, lake = settings_for(s3_bucket, moto_endpoint), Lake(lake_root)
    messages: list[str] = []

    first = fetch_day(settings, lake, DAY, progress=messages.append)

    assert (first.listed, first.fetched, first.skipped, first.failed) == (3, 3, 0, 0)
    assert first.fetched_keys == sorted(OBJECTS)
    assert first.bytes_fetched == sum(len(body) for body in OBJECTS.values())
    assert sorted(p.name for p in lake.raw_day(DAY).iterdir()) == [
        k.removeprefix("data/") for k in sorted(OBJECTS)
    ]
    for key, body in OBJECTS.items():
        assert raw_bytes(lake, key) == body
    manifest = Manifest.read(lake, DAY).entries
    heads = {key: s3_client.head_object(Bucket=s3_bucket, Key=key) for key in OBJECTS}
    assert set(manifest) == set(OBJECTS)
    for key, entry in manifest.items():
        assert entry["size"] == heads[key]["ContentLength"]
        assert entry["etag"] == heads[key]["ETag"].strip('"')
        assert entry["name"] == key.removeprefix("data/")
        assert dt.datetime.fromisoformat(entry["fetched_at"]).tzinfo is not None
    assert messages[-1] == "fetched 3/3 objects (0 failed)"

    second = fetch_day(settings, lake, DAY)
    assert (second.fetched, second.skipped, second.fetched_keys) == (0, 3, [])
    assert Manifest.read(lake, DAY).entries == manifest

    changed = "data/2019-06-01-15-17-5-events.json"
    seed(s3_client, s3_bucket, {changed: LINES[0] * 7})
    (lake.raw_day(DAY) / "2019-06-01-15-17-6-events.json").unlink()
    third = fetch_day(settings, lake, DAY)

    assert third.fetched_keys == [changed, "data/2019-06-01-15-17-6-events.json"]
    assert third.skipped == 1
    assert raw_bytes(lake, changed) == LINES[0] * 7
    assert raw_bytes(lake, "data/2019-06-01-15-17-6-events.json") == LINES[0]
    new_manifest = Manifest.read(lake, DAY).entries
    assert new_manifest[changed]["size"] == len(LINES[0] * 7)
    assert new_manifest[changed]["etag"] != manifest[changed]["etag"]
    first_key = "data/2019-06-01-15-17-4-events.json"
    assert new_manifest[first_key] == manifest[first_key]


@pytest.mark.parametrize(
    ("mode", "fail_first_n", "gets"),
    [
        ("503", 4, 5),  # outlasts botocore's 3 attempts, so our own retry has to save it
        ("slowdown", 2, 3),  # throttling: botocore's standard retry absorbs it
        ("drop", 2, 3),  # body cut mid-stream: botocore does not retry that, we do
    ],
)
def test_transient_faults_are_retried_and_the_copy_is_exact(
    s3_client, s3_bucket, moto_endpoint, lake_root, mode, fail_first_n, gets
):
    seed(s3_client, s3_bucket, OBJECTS)
    flaky = "data/2019-06-01-15-17-5-events.json"
    lake = Lake(lake_root)
    with FaultyS3Proxy(moto_endpoint, fail_first_n, mode, key_contains="15-17-5") as proxy:
        summary = fetch_day(settings_for(s3_bucket, proxy.url), lake, DAY)

    assert proxy.object_gets[flaky] == gets
    assert proxy.faults == fail_first_n
    assert summary.fetched_keys == sorted(OBJECTS)
    assert summary.failed == 0
    assert raw_bytes(lake, flaky) == OBJECTS[flaky]
    assert Manifest.read(lake, DAY).entries[flaky]["size"] == len(OBJECTS[flaky])
    assert sorted(p.name for p in lake.raw_day(DAY).iterdir()) == [
        k.removeprefix("data/") for k in sorted(OBJECTS)
    ]


def test_persistent_failure_saves_what_succeeded_and_raises_fetch_error(
    s3_client, s3_bucket, moto_endpoint, lake_root
):
    seed(s3_client, s3_bucket, OBJECTS)
    lake = Lake(lake_root)
    with FaultyS3Proxy(moto_endpoint, 100, "drop", key_contains="15-17-5") as proxy:
        with pytest.raises(FetchError) as info:
            fetch_day(settings_for(s3_bucket, proxy.url), lake, DAY)

    message = str(info.value)
    assert message.startswith("1 of 3 objects of 2019-06-01 failed to fetch; first: download")
    assert "\n" not in message and info.value.transient
    assert proxy.object_gets["data/2019-06-01-15-17-5-events.json"] == extract.MAX_ATTEMPTS
    good = sorted(set(OBJECTS) - {"data/2019-06-01-15-17-5-events.json"})
    assert sorted(Manifest.read(lake, DAY).entries) == good
    assert sorted(p.name for p in lake.raw_day(DAY).iterdir()) == [
        k.removeprefix("data/") for k in good
    ]


def test_permanent_errors_are_not_retried(s3_client, s3_bucket, moto_endpoint, tmp_path):
    with FaultyS3Proxy(moto_endpoint, 0) as proxy:
        source = open_source(settings_for(s3_bucket, proxy.url))
        gone = SourceObject("data/2019-06-01-gone.json", "2019-06-01-gone.json", 5, "x", DAY)
        with pytest.raises(SourceError) as info:
            fetch_object(source, gone, tmp_path)

    assert not info.value.transient
    assert proxy.object_gets["data/2019-06-01-gone.json"] == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bucket", ["missing", "unreachable"])
def test_bad_source_raises_source_error_and_writes_nothing(moto_endpoint, lake_root, bucket):
    endpoint = moto_endpoint if bucket == "missing" else "http://127.0.0.1:1"
    settings = settings_for("no-such-bucket-vdp", endpoint)

    with pytest.raises(SourceError) as info:
        fetch_day(settings, Lake(lake_root), DAY)

    assert "\n" not in str(info.value)
    assert not lake_root.exists()


def test_unwritable_lake_root_is_a_lake_error(s3_client, s3_bucket, moto_endpoint, tmp_path):
    seed(s3_client, s3_bucket, OBJECTS)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(LakeError, match=r"^lake root .*a-file/lake is not writable: "):
        fetch_day(settings_for(s3_bucket, moto_endpoint), Lake(blocker / "lake"), DAY)


def test_local_directory_source_fetches_incrementally(tmp_path: Path, lake_root: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for key, body in OBJECTS.items():
        (src / key.removeprefix("data/")).write_bytes(body)
    (src / "README.md").write_text("no day")
    lake = Lake(lake_root)

    first = fetch_day(Settings(source_url=str(src)), lake, DAY)
    second = fetch_day(Settings(source_url=str(src)), lake, DAY)

    assert (first.fetched, second.fetched, second.skipped) == (3, 0, 3)
    for key, body in OBJECTS.items():
        assert raw_bytes(lake, key) == body
    assert sorted(Manifest.read(lake, DAY).entries) == [
        k.removeprefix("data/") for k in sorted(OBJECTS)
    ]


def test_fetch_task_returns_summary_dict(s3_client, s3_bucket, moto_endpoint, lake_root):
    seed(s3_client, s3_bucket, OBJECTS)

    result = fetch_new_objects.fn(settings_for(s3_bucket, moto_endpoint), str(lake_root), DAY)

    assert result["source_day"] == "2019-06-01"
    assert (result["listed"], result["fetched"], result["skipped"]) == (3, 3, 0)
    assert json.loads(json.dumps(result)) == result
    listed = list_source_objects.fn(settings_for(s3_bucket, moto_endpoint), DAY)
    assert [o.key for o in listed] == sorted(OBJECTS)


def test_real_sample_day_is_fetched_byte_identical(
    s3_client, s3_bucket, moto_endpoint, lake_root, sample_dir
):
    files = sorted((sample_dir / "data").glob("*.json"))
    put_many(s3_client, s3_bucket, {f"data/{f.name}": f.read_bytes() for f in files})
    lake = Lake(lake_root)

    try:
        summary = fetch_day(settings_for(s3_bucket, moto_endpoint), lake, DAY)
    finally:
        empty_bucket(s3_client, s3_bucket)

    assert (summary.listed, summary.fetched, summary.failed) == (721, 721, 0)
    assert summary.bytes_fetched == sum(f.stat().st_size for f in files)
    for f in files:
        assert (lake.raw_day(DAY) / f.name).read_bytes() == f.read_bytes()
    assert len(Manifest.read(lake, DAY).entries) == 721


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (FetchError("2 of 9 objects failed; first: SlowDown", transient=True), True),
        (SourceError("cannot reach S3 endpoint http://x: refused", transient=True), True),
        (SourceError("bucket 'b' does not exist at AWS"), False),  # config: retrying is futile
        (FetchError("1 of 9 objects failed; first: access denied"), False),
        (LakeError("lake root /x is not writable: Read-only file system"), False),
    ],
)
def test_task_retry_condition_retries_transient_errors_only(error, retry):
    from prefect.states import Failed

    assert fetch_new_objects.retry_condition_fn(None, None, Failed(data=error)) is retry
    assert fetch_new_objects.retries == 2
    assert fetch_new_objects.name == "fetch-new-objects"
