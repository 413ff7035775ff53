"""Crash safety: writer processes SIGKILLed at random moments never lose an acknowledged write
and never leave the vault inconsistent.

The main test reuses one vault across every kill: each new writer continues where the killed
one stopped (same run, next snapshot revision, same log chain). SQLite runs in WAL with
``synchronous=NORMAL``, which must keep every committed transaction across a process crash;
PostgreSQL rolls back the transaction of a client that vanished; blobs are published by link
after fsync, so a kill mid-write leaves at most an unlisted temp file. ``--crash-kills N``
(tests/conftest.py) sets the number of kills (a tenth of them on PostgreSQL, whose server
outlives every kill anyway).

Each test runs on every `CrashBackend`: the embedded vault (SQLite + local blobs),
PostgreSQL + a local blob directory, and PostgreSQL + S3 (moto), the last two with a tenth of
``--crash-kills`` (each kill costs a fresh connection). Writers are forked by
``_crash_writer.py`` (see its docstring for why and how).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from _pg_fixtures import create_database, drop_database
from _s3_fixtures import REGION
from strongroom.models import LogQuery, RunStatus
from strongroom.services.catalog import DEFAULT_NAMESPACES
from strongroom.vault import Vault

WRITER = Path(__file__).with_name("_crash_writer.py")
REPLY_TIMEOUT = 60.0


@dataclass(frozen=True)
class CrashTarget:
    """One vault the writers are killed on: its URL and where its blobs go."""

    url: str
    blobs_url: str | None  # None: the URL's own default (the embedded vault's blobs/)
    blob_root: Path | None  # a local blob directory, to count temp leftovers and clean up
    run_sql: Callable[[str], None]  # edit the records behind the vault's back

    async def open(self) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs_url)

    def command(self) -> dict[str, Any]:
        return {"vault": self.url, "blobs": self.blobs_url}


@dataclass
class CrashBackend:
    """Makes fresh, empty vaults of one kind; ``kills_per_200`` scales ``--crash-kills``."""

    name: str
    new_target: Callable[[], CrashTarget]
    kills_per_200: int

    def kills(self, crash_kills: int) -> int:
        return max(1, crash_kills * self.kills_per_200 // 200)


def sqlite_backend(tmp_path: Path) -> CrashBackend:
    counter = iter(range(1_000_000))

    def new_target() -> CrashTarget:
        vault_dir = tmp_path / f"vault-{next(counter)}"  # created by the first writer

        def run_sql(sql: str) -> None:
            with sqlite3.connect(vault_dir / "vault.db") as db:
                db.execute(sql)
            db.close()

        return CrashTarget(str(vault_dir), None, vault_dir / "blobs", run_sql)

    return CrashBackend("sqlite", new_target, kills_per_200=200)


def postgres_backend(tmp_path: Path, databases: list[str]) -> CrashBackend:
    counter = iter(range(1_000_000))

    def new_target() -> CrashTarget:
        url = create_database()  # empty: the first writer creates the tables
        databases.append(url)
        blob_root = tmp_path / f"blobs-{next(counter)}"

        def run_sql(sql: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.encode())

        return CrashTarget(url, str(blob_root), blob_root, run_sql)

    return CrashBackend("postgresql", new_target, kills_per_200=20)


def postgres_s3_backend(databases: list[str], s3_endpoint: str, bucket: str) -> CrashBackend:
    """PostgreSQL records + S3 blobs: each target its own database and bucket prefix. The
    writers reach S3 with the test credentials `s3_env` put into the environment before the
    fork server started (the ``writers`` fixture depends on ``backend``)."""
    counter = iter(range(1_000_000))

    def new_target() -> CrashTarget:
        url = create_database()
        databases.append(url)
        blobs_url = f"s3://{bucket}/target-{next(counter)}?endpoint={s3_endpoint}&region={REGION}"

        def run_sql(sql: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.encode())

        return CrashTarget(url, blobs_url, None, run_sql)

    return CrashBackend("postgresql+s3", new_target, kills_per_200=20)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrashBackend]:
    if request.param == "sqlite":
        yield sqlite_backend(tmp_path)
        return
    request.getfixturevalue("pg_server")  # skip (or fail under CI) without a server
    databases: list[str] = []
    try:
        if request.param == "postgresql":
            yield postgres_backend(tmp_path, databases)
        else:
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = request.getfixturevalue("s3_bucket")  # also sets the credentials
            yield postgres_s3_backend(databases, endpoint, bucket)
    finally:
        for url in databases:
            drop_database(url)


class WriterServer:
    """The ``_crash_writer.py`` fork server: forks writers on request and reports their end."""

    def __init__(self, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(WRITER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONWARNINGS": "error"},
            )
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._unreaped: set[int] = set()

    def _send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()

    def _reply(self) -> str:
        assert self.process.stdout is not None
        if not self._selector.select(REPLY_TIMEOUT):
            raise AssertionError("the writer fork server stopped answering")
        line = self.process.stdout.readline().decode()
        if not line:
            raise AssertionError(f"the writer fork server died: {self.stderr_tail()}")
        return line.strip()

    def wait_ready(self) -> None:
        assert self._reply() == "ready"

    def fork(self, seed: int, target: CrashTarget, ack_file: Path) -> int:
        self._send({"fork": seed, **target.command(), "acks": str(ack_file)})
        pid = int(self._reply())
        self._unreaped.add(pid)
        return pid

    def kill(self, pid: int) -> tuple[int, int]:
        """SIGKILL a writer; (signal that ended it or 0, its exit code or -1).

        The server reaps only after our kill, so the pid cannot have been reused meanwhile."""
        os.kill(pid, signal.SIGKILL)
        self._send({"reap": pid})
        word, reaped, signal_number, code = self._reply().split()
        assert (word, int(reaped)) == ("exit", pid)
        self._unreaped.discard(pid)
        return int(signal_number), int(code)

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for pid in self._unreaped:  # a test that failed mid-cycle must not leave writers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._selector.close()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.process.wait(timeout=REPLY_TIMEOUT)


@pytest.fixture
def writers(tmp_path: Path, backend: CrashBackend) -> Iterator[WriterServer]:
    # After `backend`: the fork server inherits the environment a backend sets up (S3 keys).
    server = WriterServer(tmp_path / "writers.stderr")
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def kill_after(
    writers: WriterServer, delay: float, seed: int, target: CrashTarget, ack_file: Path
) -> None:
    pid = writers.fork(seed, target, ack_file)
    time.sleep(delay)
    ended_by, code = writers.kill(pid)
    if ended_by != signal.SIGKILL:
        raise AssertionError(
            f"writer (seed {seed}) ended by itself with {code}: {writers.stderr_tail()}"
        )


@dataclass
class Acknowledged:
    """Everything the writers reported as written, from complete ack lines only."""

    runs: set[str] = field(default_factory=set)
    statuses: dict[str, str] = field(default_factory=dict)
    snapshots: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    artifacts: dict[str, tuple[str, int]] = field(default_factory=dict)
    log_heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Acknowledged:
        raw = path.read_bytes() if path.exists() else b""
        complete, _, _torn = raw.rpartition(b"\n")  # the last writer may have died mid-line
        acks = cls()
        for line in complete.splitlines():
            record: dict[str, Any] = json.loads(line)
            op = record["op"]
            if op == "run":
                acks.runs.add(record["run_id"])
            elif op == "status":
                acks.statuses[record["run_id"]] = record["status"]
            elif op == "snapshot":
                key = (record["run_id"], record["revision"])
                acks.snapshots[key] = (record["sha256"], record["size"])
            elif op == "artifact":
                acks.artifacts[record["artifact_id"]] = (record["sha256"], record["size"])
            elif op == "log":
                acks.log_heads[record["run_id"]] = (record["seq"], record["hash"])
            else:
                raise AssertionError(f"unknown ack {record}")
        return acks


class MissingDefaults(AssertionError):
    """The vault lacks some of its default catalog namespaces."""


async def check_vault(target: CrashTarget, acks: Acknowledged) -> dict[str, int]:
    """verify() is clean, no partial blob is listed, every acknowledged write reads back and
    the default catalog exists."""
    vault = await target.open()
    try:
        report = await vault.verify()
        assert report.ok, [problem.model_dump() for problem in report.problems]

        # No partially written blob is ever listed: every listed digest hashes to its name.
        digests = [digest async for digest in vault.blobs.iter_digests()]
        for digest in digests:
            assert (await vault.blobs.verify(digest)).sha256 == digest

        for run_id in acks.runs:
            await vault.runs.get(run_id)
        for run_id, status in acks.statuses.items():
            run = await vault.runs.get(run_id)
            if status == "completed":
                assert run.status is RunStatus.COMPLETED
                # complete() returned, so the run's log was sealed before the ack.
                assert (await vault.logs.reference(run_id)).sealed
            else:
                assert run.status in (RunStatus.RUNNING, RunStatus.COMPLETED)

        revisions: dict[str, list[int]] = defaultdict(list)
        for (run_id, revision), (sha256, size) in acks.snapshots.items():
            loaded = await vault.snapshots.load(run_id, revision)
            assert (loaded.record.sha256, loaded.record.size_bytes) == (sha256, size)
            revisions[run_id].append(revision)
        for run_id, acked in revisions.items():
            history = [record.revision for record in await vault.snapshots.history(run_id)]
            assert history == list(range(1, len(history) + 1)), f"revision gap in {run_id}"
            assert set(acked) <= set(history)

        for artifact_id, (sha256, size) in acks.artifacts.items():
            meta = await vault.artifacts.get(artifact_id)
            data = await vault.artifacts.get_bytes(artifact_id)
            assert (meta.sha256, meta.size_bytes) == (sha256, size)
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha256, size)

        for run_id, (seq, entry_hash) in acks.log_heads.items():
            (entry,) = await vault.logs.read(run_id, LogQuery(after_seq=seq - 1, limit=1))
            assert (entry.seq, entry.hash) == (seq, entry_hash)

        namespaces = {namespace.namespace_id for namespace in await vault.catalog.namespaces()}
        if not set(DEFAULT_NAMESPACES) <= namespaces:
            raise MissingDefaults(f"missing namespaces: {set(DEFAULT_NAMESPACES) - namespaces}")
        return {"blobs": len(digests), **report.checked}
    finally:
        await vault.close()


def kill_delay(rng: random.Random) -> float:
    """Seconds between fork and kill: mostly mid-work, sometimes inside Vault.open."""
    if rng.random() < 0.1:
        return rng.uniform(0.0, 0.03)
    return rng.uniform(0.03, 0.45)


@pytest.mark.slow
def test_sigkilled_writers_never_lose_an_acknowledged_write(
    tmp_path: Path, writers: WriterServer, crash_kills: int, backend: CrashBackend
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    target, ack_file = backend.new_target(), tmp_path / "acks.jsonl"
    kills = backend.kills(crash_kills)
    started = time.monotonic()

    for _ in range(kills):
        kill_after(writers, kill_delay(rng), rng.randrange(2**32), target, ack_file)
    killed_at = time.monotonic()

    acks = Acknowledged.read(ack_file)
    assert acks.snapshots, "the writers acknowledged no snapshot"
    assert acks.artifacts, "the writers acknowledged no artifact"
    assert acks.log_heads, "the writers acknowledged no log line"
    # The default catalog after a crash inside the first open is the next test's subject.
    checked = asyncio.run(check_vault(target, acks))
    leftovers = "n/a"
    if target.blob_root is not None and (target.blob_root / "tmp").is_dir():
        leftovers = str(len(os.listdir(target.blob_root / "tmp")))
    print(
        f"{backend.name} seed={seed} kills={kills} kill_phase={killed_at - started:.1f}s "
        f"check_phase={time.monotonic() - killed_at:.1f}s runs={len(acks.runs)} "
        f"snapshots={len(acks.snapshots)} artifacts={len(acks.artifacts)} "
        f"temp_leftovers={leftovers} checked={checked}"
    )
    for local in (Path(target.url), target.blob_root):  # hundreds of MiB; kept on failure
        if local is not None and local.is_dir():
            shutil.rmtree(local)


@pytest.mark.slow
def test_writers_killed_while_creating_a_vault_leave_it_complete(
    tmp_path: Path, writers: WriterServer, backend: CrashBackend
) -> None:
    """Kills spread over the first open (migrations, default catalog): reopening the vault
    must finish the job."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    incomplete: list[str] = []
    for attempt in range(40):
        target = backend.new_target()
        delay = 0.002 + 0.005 * attempt  # walks over the first open (~100 ms when idle)
        kill_after(writers, delay, rng.randrange(2**32), target, tmp_path / "acks.jsonl")
        try:
            asyncio.run(check_vault(target, Acknowledged()))
        except MissingDefaults as exc:
            incomplete.append(f"killed after {delay * 1000:.0f} ms: {exc}")
    if incomplete:
        raise MissingDefaults(f"seed {seed}: " + "; ".join(incomplete))


async def test_reopening_restores_defaults_a_crash_cut_short(backend: CrashBackend) -> None:
    """The state a first open killed between the default provider and its namespaces leaves
    behind, built by hand: the next open must create the missing namespaces."""
    target = backend.new_target()
    vault = await target.open()
    await vault.close()
    target.run_sql("DELETE FROM namespaces WHERE namespace_id != 'runs'")

    vault = await target.open()
    try:
        namespaces = {namespace.namespace_id for namespace in await vault.catalog.namespaces()}
    finally:
        await vault.close()
    if not set(DEFAULT_NAMESPACES) <= namespaces:
        raise MissingDefaults(f"missing namespaces: {set(DEFAULT_NAMESPACES) - namespaces}")
