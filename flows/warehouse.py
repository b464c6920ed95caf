"""Where the PostgreSQL warehouse lives: its URL (given, or an embedded server under the lake),
connections with one-line errors that never show a password, and forward-only migrations."""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

from flows.errors import VdpError
from flows.lake import Lake
from flows.resources import package_dir
from flows.settings import Settings

SQL_DIR = package_dir("flows.warehouse_sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
MIGRATE_LOCK_KEY = 0x5644_5001  # arbitrary fixed key: serializes concurrent migrate() calls
CONNECT_TIMEOUT_S = 10
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class WarehouseError(VdpError):
    """The warehouse cannot be reached, migrated or loaded; the message is one safe line."""


class WarehouseConnectionError(WarehouseError):
    """The warehouse did not accept a connection (worth retrying, unlike data errors)."""


def redact(url: str) -> str:
    """The DSN with any password replaced by ``***``, safe to log or show."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else netloc
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/:*")))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def _password_of(url: str) -> str | None:
    try:
        return conninfo.conninfo_to_dict(url).get("password") or None
    except psycopg.ProgrammingError:
        return None


def _scrub(text: str, url: str) -> str:
    """First line of an error text with the URL's password (if any) masked."""
    line = (text.strip().splitlines() or [""])[0]
    secret = _password_of(url)
    return line.replace(secret, "***") if secret else line


def describe_error(exc: psycopg.Error) -> str:
    """The server's primary message for an error (no DSN, no SQL text), on one line."""
    primary = exc.diag.message_primary if exc.diag else None
    return _scrub(primary or str(exc) or type(exc).__name__, "")


def connect(url: str, *, timeout: int = CONNECT_TIMEOUT_S) -> psycopg.Connection:
    """An autocommit connection; ``with conn.transaction()`` then gives one real transaction."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=timeout, application_name="vdp"
        )
    except psycopg.Error as exc:
        # Only a refused/failed connection is worth retrying; a malformed DSN is not.
        kind = (
            WarehouseConnectionError
            if isinstance(exc, psycopg.OperationalError)
            else WarehouseError
        )
        reason = _scrub(str(exc), url) or type(exc).__name__
        raise kind(f"cannot connect to the warehouse at {redact(url)}: {reason}") from None


# embedded server -----------------------------------------------------------------------------
def _ensure_runtime_dir() -> None:
    """pgserver keeps its inter-process lock in XDG_RUNTIME_DIR; it must exist with mode 0700.
    An unset variable gets platformdirs' own fallback, so every process shares the lock."""
    fallback = Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or str(fallback)
    path = Path(runtime)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid() and path.stat().st_mode & 0o077:
        path.chmod(0o700)  # made earlier by a tool that ignored the mode; platformdirs warns
    os.environ["XDG_RUNTIME_DIR"] = runtime


def start_embedded(lake: Lake) -> str:
    """Start (or attach to) the embedded PostgreSQL under the lake and return its URI.
    It keeps running after this process exits, so psql and other runs can attach."""
    _ensure_runtime_dir()
    lake.root.mkdir(parents=True, exist_ok=True)
    import pgserver
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(lake.warehouse_dir.resolve())
    if info is None or not info.is_running():
        _forget_handle(lake.warehouse_dir.resolve())  # stopped elsewhere: start it again
    try:
        try:
            server = pgserver.get_server(lake.warehouse_dir, cleanup_mode=None)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            # pgserver gives pg_ctl 10 s (then fails reading a log not yet written); on a busy
            # machine the server may still be coming up: attach to it, or start it once more
            _forget_handle(lake.warehouse_dir.resolve())
            server = pgserver.get_server(lake.warehouse_dir, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise WarehouseError(
            f"cannot start the embedded PostgreSQL in {lake.warehouse_dir}: "
            f"{type(exc).__name__}: {exc}; see {lake.warehouse_dir / 'log'}"
        ) from None
    return server.get_uri()


def _forget_handle(pgdata: Path) -> None:
    """Drop this process's pgserver handle so a later start_embedded() starts a fresh server
    instead of returning the stopped one (and its exit hook does not trip over it)."""
    import pgserver

    handle = pgserver.PostgresServer._instances.pop(pgdata, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())


def stop_embedded(lake: Lake) -> bool:
    """Stop the embedded PostgreSQL of this lake; False when it was not running."""
    _ensure_runtime_dir()
    import pgserver
    from pgserver.utils import PostmasterInfo

    pgdata = lake.warehouse_dir.resolve()
    _forget_handle(pgdata)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.SubprocessError as exc:
        raise WarehouseError(
            f"cannot stop the embedded PostgreSQL in {pgdata}: {exc}; see {pgdata / 'log'}"
        ) from None
    return True


def embedded_psql_hint(lake: Lake) -> str:
    """How to open psql on the embedded warehouse (its socket directory is in the URI)."""
    from pgserver.utils import PostmasterInfo

    pgdata = lake.warehouse_dir.resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    if info is None or not info.is_running():
        return f"embedded warehouse in {pgdata} is not running (any `vdp run` starts it)"
    return f'psql "{info.get_uri()}"'


def warehouse_url(settings: Settings, lake: Lake) -> str:
    """The configured warehouse DSN, else the embedded server's URI (started on demand)."""
    if settings.warehouse_url is not None:
        return settings.warehouse_url.get_secret_value()
    return start_embedded(lake)


# migrations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def read_sql(name: str) -> str:
    """A statement file from warehouse_sql/ (file names come from code, never from input)."""
    return (SQL_DIR / name).read_text()


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The NNN_name.sql files in version order; a malformed or duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise WarehouseError(f"migration file {path.name} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise WarehouseError(f"two migrations have version {version:03d}: rename one")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]] | None:
    """Applied versions -> (name, checksum), or None when nothing was ever migrated."""
    exists = conn.execute("select to_regclass('warehouse.schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return None
    rows = conn.execute("select version, name, checksum from warehouse.schema_migrations")
    return {version: (name, checksum) for version, name, checksum in rows.fetchall()}


def _check(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    """Forward-only: an applied migration must be unchanged and known to this code."""
    known = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        if version not in known:
            raise WarehouseError(
                f"warehouse has migration {name} that this code does not know; upgrade the code"
            )
        if known[version].checksum != checksum:
            raise WarehouseError(
                f"migration {name} changed after it was applied (checksum mismatch); "
                "migrations are forward-only: restore the file and add a new migration"
            )


def _apply(conn: psycopg.Connection, migration: Migration) -> bool:
    """Apply one migration in its own transaction under the migrate lock; False if already in."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", [MIGRATE_LOCK_KEY])
        conn.execute(read_sql("create_schema_migrations.sql"))
        applied = _applied(conn) or {}
        _check([migration], {v: a for v, a in applied.items() if v == migration.version})
        if migration.version in applied:
            return False
        try:
            conn.execute(migration.sql)
        except psycopg.Error as exc:
            raise WarehouseError(
                f"migration {migration.name} failed: {describe_error(exc)}"
            ) from None
        conn.execute(
            "insert into warehouse.schema_migrations (version, name, checksum) values (%s, %s, %s)",
            [migration.version, migration.name, migration.checksum],
        )
    return True


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; returns the names applied by this call.
    Safe to run from several processes at once (advisory lock, re-check under the lock)."""
    migrations = discover_migrations(directory)
    try:
        applied = _applied(conn)
        _check(migrations, applied or {})
        pending = [m for m in migrations if applied is None or m.version not in applied]
        done = [m.name for m in pending if _apply(conn, m)]
        _check(migrations, _applied(conn) or {})
    except psycopg.Error as exc:
        raise WarehouseError(f"migrating the warehouse failed: {describe_error(exc)}") from None
    return done
