"""Where a benchmark's vault lives, and the raw clients its baseline uses there.

- ``embedded``: SQLite (``vault.db``) + the local blob directory, in a fresh directory under
  the work directory (what ``make bench`` has always measured). Baselines: ``os`` + ``hashlib``
  + ``sqlite3`` on the same disk.
- ``postgres-s3``: a fresh, uniquely named PostgreSQL database on the server at
  ``STRONGROOM_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``;
  the role must be allowed to CREATE DATABASE), dropped afterwards, + a fresh bucket on moto's
  standalone S3 server (``python -m moto.server``, started once per run as a subprocess on a
  free loopback port, with fake credentials in this process's environment). Baselines: raw
  ``psycopg`` on the same database + raw ``obstore`` on the same bucket (+ ``hashlib``).

A benchmark asks its `Context` for a `VaultSpace` (``ctx.fresh_vault(label)``), opens the
vault with ``space.open_vault()`` and gets its baseline's database connection from
``space.raw_records()``; everything is removed when the space is left (``--keep`` keeps it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from strongroom import Vault

if TYPE_CHECKING:
    import sqlite3

    import psycopg
    from obstore.store import S3Store

__all__ = [
    "BACKENDS",
    "DEFAULT_POSTGRES_URL",
    "POSTGRES_URL_ENV",
    "Backend",
    "BackendUnavailable",
    "EmbeddedBackend",
    "PostgresS3Backend",
    "RawRecords",
    "S3Location",
    "VaultSpace",
    "make_backend",
    "qmark_to_format",
]

BACKENDS: Final = ("embedded", "postgres-s3")
POSTGRES_URL_ENV: Final = "STRONGROOM_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX: Final = "strongroom_bench_"
REGION: Final = "us-east-1"
_MOTO_START_TIMEOUT = 30.0
# Fake credentials for moto (it does not check them); nothing real is ever read or sent.
_FAKE_AWS_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "strongroom-bench-key",
    "AWS_SECRET_ACCESS_KEY": "strongroom-bench-secret",
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class BackendUnavailable(RuntimeError):
    """The backend's servers cannot be reached or started; its benchmarks fail with this."""


# -- raw records access for the baselines ------------------------------------------------------


class RawRecords(ABC):
    """A plain DBAPI connection for a baseline: ``sqlite3`` or ``psycopg``, no SQLAlchemy.

    SQL is written with ``?`` placeholders; the PostgreSQL side turns them into ``%s`` (so a
    statement for it must not contain ``%`` or a literal ``?``; `execute_native` takes the
    driver's own syntax)."""

    dialect: str

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        """A write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL READ COMMITTED, as
        strongroom writes) or a read one (``BEGIN``; PostgreSQL REPEATABLE READ READ ONLY,
        as strongroom reads)."""

    @abstractmethod
    def execute_native(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the driver's placeholder syntax; its rows (``[]`` if none)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute_native(self._native(sql), params)

    def _native(self, sql: str) -> str:
        return sql


class SqliteRecords(RawRecords):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        from benchmarks._common import raw_sqlite

        self.conn: sqlite3.Connection = raw_sqlite(path)

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def execute_native(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def close(self) -> None:
        self.conn.close()


class PostgresRecords(RawRecords):
    """One psycopg 3 connection (server-side binding, prepared after 5 runs of a statement:
    psycopg's defaults, which SQLAlchemy's psycopg dialect keeps too)."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(url, autocommit=False)

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        from psycopg import IsolationLevel

        conn = self.conn
        if write:
            conn.isolation_level = IsolationLevel.READ_COMMITTED
            conn.read_only = False
        else:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        # BEGIN [ISOLATION LEVEL ... READ ONLY] ... COMMIT, as SQLAlchemy does for strongroom.
        with conn.transaction():
            yield

    def execute_native(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # psycopg 3 sends the batch in pipeline mode (one round trip, not one per row).
        with self.conn.cursor() as cursor:
            cursor.executemany(self._native(sql).encode(), rows)

    def close(self) -> None:
        self.conn.close()

    def _native(self, sql: str) -> str:
        return qmark_to_format(sql)


def qmark_to_format(sql: str) -> str:
    """``?`` placeholders -> psycopg's ``%s``; SQL holding a ``%`` is refused (it would need
    escaping: write it for `RawRecords.execute_native` instead)."""
    if "%" in sql:
        raise ValueError("SQL with '%' needs the driver's own syntax: use execute_native")
    return sql.replace("?", "%s")


# -- a vault's place ---------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    """A bucket on the S3 endpoint; ``prefix`` is where the vault's blobs go."""

    endpoint: str
    bucket: str
    prefix: str = "vault"
    region: str = REGION

    @property
    def blobs_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}?endpoint={self.endpoint}&region={self.region}"

    def raw_store(self, prefix: str = "raw") -> S3Store:
        """A plain obstore client on the same bucket for a baseline (its own prefix), with
        the timeouts strongroom's store uses (obstore's 30 s default would cut a long GET)."""
        from obstore.store import S3Store

        return S3Store(
            self.bucket,
            prefix=prefix,
            endpoint=self.endpoint,
            region=self.region,
            client_options={
                "allow_http": True,
                "connect_timeout": "10s",
                "timeout": "6h",
                "read_timeout": "120s",
            },
        )


@dataclass
class VaultSpace:
    """A fresh place for one vault: the URLs to open it, a local scratch directory (``root``:
    baseline files, ``get_file`` destinations) and what the baseline connects to."""

    backend: str
    root: Path
    url: str
    blobs_url: str | None = None
    sqlite_path: Path | None = None  # embedded: the vault's database file
    postgres_url: str | None = None  # postgres-s3: libpq URL of the fresh database
    s3: S3Location | None = None  # postgres-s3: the fresh bucket

    async def open_vault(self) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs_url)

    def raw_records(self, sqlite_file: Path | None = None) -> RawRecords:
        """The baseline's database connection: on PostgreSQL the vault's own database; on
        SQLite ``sqlite_file`` if given (a separate file, as the older baselines use), else
        the vault's file."""
        if self.postgres_url is not None:
            return PostgresRecords(self.postgres_url)
        path = sqlite_file or self.sqlite_path
        if path is None:
            raise RuntimeError("this vault space has no SQLite database")
        return SqliteRecords(path)


# -- backends ----------------------------------------------------------------------------------


class Backend(ABC):
    """What the runner starts once (`start`/`stop`) and every benchmark gets spaces from."""

    name: str
    description: str

    @abstractmethod
    def start(self, workdir: Path) -> None:
        """Start or check what the backend needs; `BackendUnavailable` if it cannot."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what `start` started (idempotent)."""

    @abstractmethod
    @contextlib.contextmanager
    def space(self, root: Path, *, keep: bool = False) -> Iterator[VaultSpace]:
        """A fresh vault place; ``root`` is an empty local directory owned by the caller."""

    def info(self) -> dict[str, Any]:
        """Server versions and the like, for the results file."""
        return {}

    def service_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds the backend's own servers have used for this run so far (so that the
        runner does not count them as other processes' interference)."""
        return {}


class EmbeddedBackend(Backend):
    name = "embedded"
    description = "SQLite + local blob directory"

    def start(self, workdir: Path) -> None:
        return None  # nothing to start: SQLite and the disk are always there

    def stop(self) -> None:
        return None

    @contextlib.contextmanager
    def space(self, root: Path, *, keep: bool = False) -> Iterator[VaultSpace]:
        vault_dir = root / "vault"
        yield VaultSpace(
            backend=self.name, root=root, url=str(vault_dir), sqlite_path=vault_dir / "vault.db"
        )


def _libpq_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(method: str, url: str, timeout: float = 10.0) -> int:
    """Status of a bare HTTP request (moto does not check signatures)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return None


class _PostgresCpu:
    """Samples the CPU time of the PostgreSQL server processes serving this run's databases
    (their process titles name the database: ``postgres: user strongroom_bench_... ``) every
    0.5 s; the last 0.5 s of a connection that closes can be missed. A scan reads only the
    ``comm`` of processes it has not seen yet, and the title of ``postgres`` ones (well under a
    millisecond), so the sampler does not disturb the timings."""

    INTERVAL = 0.5

    def __init__(self) -> None:
        self._seen: dict[int, tuple[float, float]] = {}  # pid -> (first, last) CPU seconds
        self._not_postgres: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-pg-cpu", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.sample()

    def sample(self) -> None:
        marker = DATABASE_PREFIX.encode()
        with self._lock:
            pids = {int(name) for name in os.listdir("/proc") if name.isdigit()}
            self._not_postgres &= pids  # forget pids that are gone (they may be reused)
            for pid in pids - self._not_postgres:
                try:
                    with open(f"/proc/{pid}/comm", "rb") as handle:
                        comm = handle.read().strip()
                    if comm != b"postgres":
                        self._not_postgres.add(pid)
                        continue
                    # Re-read each time: a new backend takes its title only after login.
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        title = handle.read()
                except OSError:
                    continue
                if not title.startswith(b"postgres:") or marker not in title:
                    continue
                cpu = _proc_cpu_seconds(pid)
                if cpu is not None:
                    # Our connections are new: a process first seen now has worked for us
                    # since it started, so all of its CPU time counts.
                    self._seen[pid] = (self._seen.get(pid, (0.0, 0.0))[0], cpu)

    def total(self) -> float:
        self.sample()
        return sum(last - first for first, last in self._seen.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class PostgresS3Backend(Backend):
    name = "postgres-s3"
    description = "PostgreSQL + S3 (moto)"

    def __init__(self) -> None:
        self.admin_url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
        self.endpoint: str | None = None
        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self._settings: dict[str, str] = {}
        self._pg_cpu: _PostgresCpu | None = None

    # -- lifecycle --

    def start(self, workdir: Path) -> None:
        self._check_postgres()
        if importlib.util.find_spec("moto") is None:
            raise BackendUnavailable(
                "moto is not installed: pip install -e '.[dev]' (brings moto[server])"
            )
        self._set_env()
        workdir.mkdir(parents=True, exist_ok=True)
        self._moto_log = workdir / "moto.log"
        try:
            self._start_moto(self._moto_log)
        except BaseException:
            self.stop()
            raise
        self._pg_cpu = _PostgresCpu()

    def stop(self) -> None:
        if self._pg_cpu is not None:
            self._pg_cpu.stop()
        process, self._moto = self._moto, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def _check_postgres(self) -> None:
        import psycopg

        from strongroom.adapters import safe_url

        try:
            with psycopg.connect(
                _libpq_url(self.admin_url), connect_timeout=5, autocommit=True
            ) as conn:
                settings = {
                    name: conn.execute(f"SHOW {name}").fetchone()
                    for name in ("server_version", "shared_buffers", "synchronous_commit")
                }
                self._settings = {k: str(v[0]) if v else "?" for k, v in settings.items()}
        except (psycopg.Error, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise BackendUnavailable(
                f"PostgreSQL not reachable at {safe_url(self.admin_url)}: start it or set "
                f"{POSTGRES_URL_ENV} ({type(exc).__name__}: {first})"
            ) from None

    def _set_env(self) -> None:
        """Fake credentials for obstore (it reads them from the environment); any other
        AWS_* setting of the caller's (a profile, an endpoint) is hidden meanwhile."""
        changes: dict[str, str | None] = dict.fromkeys(
            (name for name in os.environ if name.upper().startswith("AWS_")), None
        )
        changes.update(_FAKE_AWS_ENV)
        for name in ("NO_PROXY", "no_proxy"):
            current = os.environ.get(name)
            changes[name] = f"{current},127.0.0.1" if current else "127.0.0.1"
        for name, value in changes.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _start_moto(self, log_path: Path) -> None:
        last = "it did not start"
        for _ in range(3):  # another process may take the free port first
            port = _free_port()
            endpoint = f"http://127.0.0.1:{port}"
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + _MOTO_START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if _http("GET", f"{endpoint}/", timeout=1.0) < 500:
                        self._moto, self.endpoint = process, endpoint
                        return
                except OSError:
                    pass
                time.sleep(0.1)
            process.terminate()
            process.wait(timeout=10)
            tail = log_path.read_text(errors="replace")[-400:]
            last = f"it did not answer on {endpoint} (log {log_path}: ...{tail!r})"
        raise BackendUnavailable(f"moto's S3 server (python -m moto.server) failed: {last}")

    # -- spaces --

    def _admin(self, statement: Any) -> None:
        import psycopg

        with psycopg.connect(_libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(statement)

    @contextlib.contextmanager
    def space(self, root: Path, *, keep: bool = False) -> Iterator[VaultSpace]:
        from psycopg import sql

        if self.endpoint is None or self._moto is None or self._moto.poll() is not None:
            raise BackendUnavailable("moto's S3 server is not running (see moto.log)")
        token = uuid.uuid4().hex
        database = f"{DATABASE_PREFIX}{token}"
        bucket = f"srbench-{token[:20]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        try:
            status = _http("PUT", f"{self.endpoint}/{bucket}")
            if status >= 300:
                raise BackendUnavailable(f"moto refused to create bucket {bucket}: HTTP {status}")
            url = _with_database(self.admin_url, database)
            s3 = S3Location(endpoint=self.endpoint, bucket=bucket)
            try:
                yield VaultSpace(
                    backend=self.name,
                    root=root,
                    url=url,
                    blobs_url=s3.blobs_url,
                    postgres_url=_libpq_url(url),
                    s3=s3,
                )
            finally:
                if keep:
                    print(f"    kept database {database}, bucket {bucket}", file=sys.stderr)
                else:
                    self._drop_bucket(s3)
        finally:
            if not keep:
                self._admin(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )

    def _drop_bucket(self, s3: S3Location) -> None:
        import obstore as obs

        store = s3.raw_store(prefix="")
        with contextlib.suppress(Exception):  # moto forgets everything when it stops anyway
            for batch in obs.list(store, chunk_size=1000):
                obs.delete(store, [meta["path"] for meta in batch])
            _http("DELETE", f"{s3.endpoint}/{s3.bucket}")

    # -- reporting --

    def info(self) -> dict[str, Any]:
        from importlib.metadata import version

        from strongroom.adapters import safe_url

        settings = dict(self._settings)
        return {
            "postgresql": settings.pop("server_version", ""),
            "postgres_settings": settings,
            "postgres_url": safe_url(self.admin_url),
            "moto": version("moto"),
            "s3_endpoint": self.endpoint,
        }

    def service_cpu_seconds(self) -> dict[str, float]:
        if self._moto is None:
            return {}  # not started (or stopped)
        moto = _proc_cpu_seconds(self._moto.pid)
        return {
            "moto": moto or 0.0,
            "postgres": self._pg_cpu.total() if self._pg_cpu is not None else 0.0,
        }


def make_backend(name: str) -> Backend:
    if name == "embedded":
        return EmbeddedBackend()
    if name == "postgres-s3":
        return PostgresS3Backend()
    raise ValueError(f"unknown backend {name!r}: {', '.join(BACKENDS)}")
