"""Where the source is read: list a day's objects and stream them from S3 or a local directory.

S3 goes through a prefect-aws ``AwsCredentials`` (a saved block, or one built from settings)
and its boto3 client, with timeouts and botocore retries for transient faults. Every failure
a user can hit becomes a one-line ``SourceError``; ``transient`` says whether a retry may help.
"""

from __future__ import annotations

import datetime as dt
import errno
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from flows.errors import VdpError
from flows.settings import Settings

DAY_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")
USER_INFO = re.compile(r"(\w+://)[^/@\s]+@")
CONNECTION_REPR = re.compile(r"^\w+\(host=[^)]*\):\s*")
CHUNK_BYTES = 1 << 20
CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 60,
    # botocore counts retries here: 2 means 3 attempts before our own per-object retry
    "retries": {"mode": "standard", "max_attempts": 2},
}
# failures of the remote side; anything else (a local OSError writing dest) is the lake's
REMOTE_ERRORS = (BotoCoreError, ClientError, Urllib3Error, ConnectionError, TimeoutError)
TRANSIENT_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class SourceError(VdpError):
    """The source cannot be listed or read; the message says what failed and what to do."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class SourceObject:
    key: str
    name: str
    size: int
    etag: str
    source_day: dt.date | None


class Source(Protocol):
    def list_day(self, day: dt.date) -> list[SourceObject]: ...

    def download(self, obj: SourceObject, dest: Path) -> None: ...

    def describe(self) -> str: ...


def parse_source_day(name: str) -> dt.date | None:
    """The day in an object's name (its leading YYYY-MM-DD), or None when it has none."""
    match = DAY_PREFIX.match(name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """A URL without user info or query string, safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class S3Source:
    """Objects under ``s3://bucket/prefix`` read through a boto3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str, where: str, auth: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.where, self.auth = where, auth

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.where} ({self.auth})"

    def list_day(self, day: dt.date) -> list[SourceObject]:
        objects = self._list(self.prefix + day.isoformat())
        return [obj for obj in objects if obj.source_day == day]

    def _list(self, prefix: str) -> list[SourceObject]:
        try:
            objects = [self._object(item) for item in self._pages(prefix)]
        except Exception as exc:
            raise self._error(exc, "list") from exc
        return sorted((obj for obj in objects if obj is not None), key=lambda o: o.key)

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _object(self, item: dict[str, Any]) -> SourceObject | None:
        """Direct children of the prefix only, so names are unique within a day."""
        name = item["Key"][len(self.prefix) :]
        if not name or "/" in name:
            return None
        etag = str(item.get("ETag", "")).strip('"')
        return SourceObject(item["Key"], name, int(item["Size"]), etag, parse_source_day(name))

    def download(self, obj: SourceObject, dest: Path) -> None:
        """Stream one object into ``dest``; If-Match makes a concurrent overwrite fail loudly."""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"'
            )
            with open(dest, "wb") as handle:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    handle.write(chunk)
        except REMOTE_ERRORS as exc:
            raise self._error(exc, f"download s3://{self.bucket}/{obj.key}") from exc
        _check_size(obj, dest)

    def _error(self, exc: Exception, action: str) -> SourceError:
        return s3_error(exc, action, self.bucket, self.where)


def s3_error(exc: Exception, action: str, bucket: str, where: str) -> SourceError:
    """Turn a boto3/urllib3 failure into a one-line SourceError that says what to do."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return SourceError(
            "no AWS credentials found: set VDP_S3_ANONYMOUS=true for a public bucket, "
            "or VDP_AWS_CREDENTIALS_BLOCK / the standard AWS variables"
        )
    if isinstance(exc, ClientError):
        return _client_error(exc, action, bucket, where)
    if isinstance(exc, BotoConnectionError):
        return SourceError(f"cannot reach S3 endpoint {where}: {_reason(exc)}", transient=True)
    if isinstance(exc, BotoCoreError | Urllib3Error | OSError):
        return SourceError(f"{action} failed at {where}: {_reason(exc)}", transient=True)
    return SourceError(f"{action} failed at {where}: {_reason(exc)}")


def _client_error(exc: ClientError, action: str, bucket: str, where: str) -> SourceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return SourceError(f"bucket '{bucket}' does not exist at {where}")
    if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return SourceError(
            f"access denied to bucket '{bucket}' at {where} ({code}): check credentials, "
            "or VDP_S3_ANONYMOUS (true only works for public objects)"
        )
    if code in {"PreconditionFailed", "412"}:
        return SourceError(f"{action}: object changed while fetching; run again", transient=True)
    transient = code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    message = error.get("Message") or "no message"
    return SourceError(f"{action} failed at {where}: {code} {message}", transient=transient)


def _reason(exc: BaseException) -> str:
    """The error's text on one line, with any user info in URLs removed."""
    if isinstance(exc, BotoConnectionError) and exc.kwargs.get("error") is not None:
        exc = exc.kwargs["error"]  # "[Errno 111] Connection refused" beats the whole URL
    text = CONNECTION_REPR.sub("", " ".join(str(exc).split()))
    return USER_INFO.sub(r"\1", text) or type(exc).__name__


def _check_size(obj: SourceObject, dest: Path) -> None:
    got = dest.stat().st_size
    if got != obj.size:
        raise SourceError(f"short read of {obj.key}: got {got} of {obj.size} bytes", transient=True)


class LocalSource:
    """Files in a local directory whose names start with a day, like the S3 objects."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"directory {self.root}"

    def list_day(self, day: dt.date) -> list[SourceObject]:
        return [obj for obj in self._list(day.isoformat()) if obj.source_day == day]

    def _list(self, prefix: str) -> list[SourceObject]:
        if not self.root.is_dir():
            raise SourceError(
                f"source directory {self.root} does not exist: set VDP_SOURCE_URL to an "
                "existing directory or an s3:// URL"
            )
        paths = sorted(p for p in self.root.glob(f"{prefix}*") if p.is_file())
        return [self._object(path) for path in paths]

    def _object(self, path: Path) -> SourceObject:
        stat = path.stat()
        etag = f"{stat.st_size}-{stat.st_mtime_ns}"
        return SourceObject(path.name, path.name, stat.st_size, etag, parse_source_day(path.name))

    def download(self, obj: SourceObject, dest: Path) -> None:
        """Copy one file into ``dest``; errors writing ``dest`` propagate as OSError."""
        try:
            shutil.copyfile(self.root / obj.key, dest)
        except OSError as exc:
            # sendfile reports a full or read-only lake with the *source* as filename
            writing = exc.errno in _WRITE_ERRNOS or dest in {
                Path(f) for f in (exc.filename, exc.filename2) if f is not None
            }
            if writing:
                raise
            raise SourceError(f"cannot read {self.root / obj.key}: {exc.strerror}") from exc
        _check_size(obj, dest)


def open_source(settings: Settings) -> Source:
    """The source named by ``settings.source_url``: S3 for ``s3://``, else a directory."""
    if settings.source_is_s3:
        return _open_s3(settings)
    url = settings.source_url
    path = Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url)
    return LocalSource(path.expanduser().resolve())


def _open_s3(settings: Settings) -> S3Source:
    bucket, _, prefix = settings.source_url[len("s3://") :].partition("/")
    if not bucket:
        raise SourceError(
            f"VDP_SOURCE_URL {settings.source_url!r} names no bucket (s3://bucket/prefix/)"
        )
    endpoint = settings.s3_endpoint_url
    where = redact_url(endpoint) if endpoint else f"AWS S3 ({settings.s3_region})"
    credentials = _credentials(settings)
    try:
        client = credentials.get_s3_client()
    except Exception as exc:
        raise s3_error(exc, "create S3 client", bucket, where) from exc
    return S3Source(client, bucket, prefix, where, _auth_label(settings))


def _auth_label(settings: Settings) -> str:
    if settings.aws_credentials_block:
        return f"credentials block '{settings.aws_credentials_block}'"
    return "anonymous" if settings.s3_anonymous else "AWS credential chain"


def _credentials(settings: Settings) -> Any:
    """An AwsCredentials from the named block, or built from settings; timeouts and retries
    are added to whatever client parameters the block holds, never overriding them."""
    from prefect_aws import AwsClientParameters, AwsCredentials

    config = {**CLIENT_CONFIG, "max_pool_connections": max(10, settings.fetch_concurrency)}
    if settings.aws_credentials_block:
        try:
            block = AwsCredentials.load(settings.aws_credentials_block)
        except Exception as exc:
            raise SourceError(
                f"cannot load AwsCredentials block '{settings.aws_credentials_block}': "
                f"{_reason(exc)}"
            ) from exc
        params = block.aws_client_parameters
        merged = params.model_copy(
            update={
                "config": {**config, **(params.config or {})},
                "endpoint_url": params.endpoint_url or settings.s3_endpoint_url,
            }
        )
        return block.model_copy(update={"aws_client_parameters": merged})
    if settings.s3_anonymous:
        config["signature_version"] = "unsigned"
    params = AwsClientParameters(endpoint_url=settings.s3_endpoint_url, config=config)
    return AwsCredentials(region_name=settings.s3_region, aws_client_parameters=params)
