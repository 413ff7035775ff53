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

Kills are placed by progress, never by a guessed delay, so that a slow or loaded machine
kills at the same points as a fast one, only later: each writer reports its progress on a
pipe (opening the vault, beginning a write call, acknowledging a write) and `plan_kills`
draws, from the campaign's seed, after which event each writer dies (plus, at times, a random
part of how long an open or a write call takes here and now, as the same reports measure it).
Some kills land inside `Vault.open`, some inside a write call (some of those at a pause the
writer makes mid-stream on request, which needs no luck), most after a random number of
acknowledged writes; the test asserts from each killed writer's last report that there were
kills after an acknowledged write, inside a write call and inside the open. The seed is
printed first; ``STRONGROOM_CRASH_SEED`` replays its choices.
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
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict, deque
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
REPLY_TIMEOUT = 120.0  # the fork server's answers (its first: ready, after its imports)
PROGRESS_TIMEOUT = 120.0  # a writer's longest wait for the progress a kill waits for
SEED_ENV = "STRONGROOM_CRASH_SEED"


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
    max_acks: int  # kills after progress wait for 1 to max_acks acks (or write calls begun)

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

    return CrashBackend("sqlite", new_target, kills_per_200=200, max_acks=90)


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

    return CrashBackend("postgresql", new_target, kills_per_200=20, max_acks=60)


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

    return CrashBackend("postgresql+s3", new_target, kills_per_200=20, max_acks=60)


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


@dataclass
class WriterState:
    """What the test has seen a writer report (``_crash_writer.py`` documents the events)."""

    seed: int
    last: str = "forked"  # its last event, with the operation's name: "begin snapshot"
    acks: int = 0
    begun: int = 0  # write calls started
    opened: bool = False
    paused: bool = False
    failed: bool = False
    opening_at: float | None = None
    begin_at: float | None = None  # when the test saw the current write call begin

    @property
    def opening(self) -> bool:
        return self.opening_at is not None

    def where(self) -> str:
        """Where a kill after this state landed: "in open", "in op", "between ops" or
        "before open" (the writer had not announced its open yet)."""
        event = self.last.split()[0]
        if event in ("begin", "paused"):
            return "in op"
        if event == "opening":
            return "in open"
        if event in ("opened", "ack"):
            return "between ops"
        return "before open"


class Pace:
    """How long opens and write calls take here and now (as the test sees the events), so
    that delays after a progress event scale with the machine instead of being guessed."""

    def __init__(self) -> None:
        self.opens: deque[float] = deque(maxlen=64)
        self.calls: deque[float] = deque(maxlen=256)

    def open_seconds(self) -> float:
        return statistics.median(self.opens) if self.opens else 0.05

    def call_seconds(self) -> float:
        return statistics.median(self.calls) if self.calls else 0.005


class WriterServer:
    """The ``_crash_writer.py`` fork server: forks writers on request, follows their progress
    on a pipe and reports their end."""

    def __init__(self, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        progress_read, progress_write = os.pipe()
        try:
            with stderr_path.open("ab") as stderr:
                self.process = subprocess.Popen(
                    [sys.executable, str(WRITER), str(progress_write)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env={**os.environ, "PYTHONWARNINGS": "error"},
                    pass_fds=(progress_write,),
                )
        finally:
            os.close(progress_write)  # the server and its children hold the write end
        os.set_blocking(progress_read, False)
        self._progress = progress_read
        self._partial = b""
        self._progress_selector = selectors.DefaultSelector()
        self._progress_selector.register(progress_read, selectors.EVENT_READ)
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._unreaped: set[int] = set()
        self.writers: dict[int, WriterState] = {}
        self.pace = Pace()

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

    def fork(
        self, seed: int, target: CrashTarget, ack_file: Path, pause: tuple[int, int] | None = None
    ) -> int:
        command = {"fork": seed, **target.command(), "acks": str(ack_file), "pause": pause}
        self._send(command)
        pid = int(self._reply())
        self._unreaped.add(pid)
        self.writers[pid] = WriterState(seed)
        return pid

    def _read_progress(self, deadline: float | None) -> None:
        """Take in the progress lines available, waiting until ``deadline`` for the first
        (None: not at all)."""
        if deadline is not None:
            timeout = max(0.0, deadline - time.monotonic())
            if not self._progress_selector.select(timeout):
                return
        while True:
            try:
                chunk = os.read(self._progress, 65536)
            except BlockingIOError:
                return
            if not chunk:
                raise AssertionError(f"the writer fork server died: {self.stderr_tail()}")
            now = time.monotonic()
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                pid, event = line.decode().split(" ", 1)
                self._observe(self.writers[int(pid)], event, now)

    def _observe(self, state: WriterState, event: str, now: float) -> None:
        word = event.split()[0]
        if word == "opening":
            state.opening_at = now
        elif word == "opened":
            state.opened = True
            if state.opening_at is not None:
                self.pace.opens.append(now - state.opening_at)
        elif word == "begin":
            state.begun += 1
            state.begin_at = now
        elif word == "ack":
            state.acks += 1
            if state.begin_at is not None:  # the first ack of a call: the call's duration
                self.pace.calls.append(now - state.begin_at)
                state.begin_at = None
        elif word == "paused":
            state.paused = True
        elif word == "failed":
            state.failed = True
        state.last = event

    def wait_for(
        self, pid: int, what: str, reached: Callable[[WriterState], bool], timeout: float
    ) -> None:
        """Follow writer ``pid``'s progress until ``reached`` holds; fail if it dies or makes
        no such progress within ``timeout`` seconds."""
        state = self.writers[pid]
        deadline = time.monotonic() + timeout
        while not reached(state):
            if state.failed:
                raise AssertionError(
                    f"writer (seed {state.seed}) failed waiting for {what}: {self.stderr_tail()}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"writer (seed {state.seed}) did not reach {what} within {timeout:.0f} s "
                    f"(last event {state.last!r}, {state.acks} acks): {self.stderr_tail()}"
                )
            self._read_progress(deadline)

    def linger(self, seconds: float) -> None:
        """Let the writer go on for ``seconds``, following its progress meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read_progress(deadline)

    def kill(self, pid: int) -> WriterState:
        """SIGKILL a writer that must still be running; its state as it died.

        The server reaps only after our kill, so the pid cannot have been reused meanwhile.
        Once it is reaped, everything the writer reported is in the pipe: its last event says
        where the kill landed."""
        os.kill(pid, signal.SIGKILL)
        self._send({"reap": pid})
        word, reaped, signal_number, code = self._reply().split()
        assert (word, int(reaped)) == ("exit", pid)
        self._unreaped.discard(pid)
        self._read_progress(None)
        state = self.writers.pop(pid)
        if int(signal_number) != signal.SIGKILL:
            raise AssertionError(
                f"writer (seed {state.seed}) ended by itself with {code}: {self.stderr_tail()}"
            )
        return state

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for pid in self._unreaped:  # a test that failed mid-cycle must not leave writers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._selector.close()
        self._progress_selector.close()
        os.close(self._progress)
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


@dataclass(frozen=True)
class KillPoint:
    """When to kill one writer, as progress: once it announced its open (``"open"``), began
    its ``count``-th write call (``"begin"``) or acknowledged ``count`` writes (``"acks"``),
    then after ``linger`` times a typical open or write call here and now; or (``"pause"``)
    once it paused inside a streamed artifact where ``pause`` says."""

    mode: str
    count: int = 0
    linger: float = 0.0
    pause: tuple[int, int] | None = None


def plan_kills(rng: random.Random, kills: int, max_acks: int) -> list[KillPoint]:
    """``kills`` kill points in random order: about 10% in the open, 20% inside a write call
    (a quarter of them paused mid-stream, which needs no luck), the rest after a random number
    of acknowledged writes. Each kind is there as soon as ``kills`` allows: a pause first (it
    lands both inside a call and after an acknowledged write), then acks, then an open."""
    pauses = max(1, round(kills * 0.05))
    opens = max(1, round(kills * 0.10)) if kills >= 3 else 0
    begins = min(round(kills * 0.15), kills - pauses - opens)
    modes = ["pause"] * pauses + ["open"] * opens + ["begin"] * begins
    modes = modes[:kills]
    modes += ["acks"] * (kills - len(modes))
    rng.shuffle(modes)
    points: list[KillPoint] = []
    first_open = True
    for mode in modes:
        if mode == "pause":
            points.append(KillPoint(mode, pause=(rng.randint(1, 2), rng.randint(1, 4))))
        elif mode == "open":  # the first right at the announcement: surely inside the open
            points.append(KillPoint(mode, linger=0.0 if first_open else rng.uniform(0, 1.2)))
            first_open = False
        else:
            points.append(KillPoint(mode, rng.randint(1, max_acks), rng.uniform(0, 1)))
    return points


def kill_at(
    writers: WriterServer, point: KillPoint, seed: int, target: CrashTarget, ack_file: Path
) -> WriterState:
    """Fork a writer and SIGKILL it at ``point``; its state as it died."""
    pid = writers.fork(seed, target, ack_file, point.pause)
    if point.mode == "pause":
        writers.wait_for(pid, "its pause", lambda state: state.paused, PROGRESS_TIMEOUT)
    elif point.mode == "open":
        writers.wait_for(pid, "its open", lambda state: state.opening, PROGRESS_TIMEOUT)
        writers.linger(point.linger * writers.pace.open_seconds())
    elif point.mode == "begin":
        what = f"its write call {point.count}"
        writers.wait_for(pid, what, lambda state: state.begun >= point.count, PROGRESS_TIMEOUT)
        writers.linger(point.linger * writers.pace.call_seconds())
    else:
        what = f"{point.count} acknowledged writes"
        writers.wait_for(pid, what, lambda state: state.acks >= point.count, PROGRESS_TIMEOUT)
        writers.linger(point.linger * writers.pace.call_seconds())
    return writers.kill(pid)


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


def campaign_seed(what: str) -> int:
    """A fresh seed, or the one in ``STRONGROOM_CRASH_SEED`` to replay a failure's choices
    (kill points, writer seeds); printed first so that a failure's output shows it."""
    raw = os.environ.get(SEED_ENV)
    seed = random.randrange(2**32) if raw is None else int(raw)
    print(f"{what}: seed={seed} (replay the choices with {SEED_ENV}={seed})")
    return seed


@pytest.mark.slow
def test_sigkilled_writers_never_lose_an_acknowledged_write(
    tmp_path: Path, writers: WriterServer, crash_kills: int, backend: CrashBackend
) -> None:
    seed = campaign_seed(backend.name)
    rng = random.Random(seed)
    target, ack_file = backend.new_target(), tmp_path / "acks.jsonl"
    kills = backend.kills(crash_kills)
    started = time.monotonic()

    points = plan_kills(rng, kills, backend.max_acks)
    landed: Counter[str] = Counter()  # where the kills landed, from each writer's last event
    after_an_ack = 0
    for point in points:
        state = kill_at(writers, point, rng.randrange(2**32), target, ack_file)
        landed[state.where()] += 1
        after_an_ack += state.acks >= 1
    killed_at = time.monotonic()
    # Kills on progress: these hold however slow the machine is.
    assert after_an_ack > 0, f"no kill came after an acknowledged write: {landed}"
    assert landed["in op"] > 0, f"no kill landed inside a write call: {landed}"
    if kills >= 3:
        assert landed["in open"] > 0, f"no kill landed inside Vault.open: {landed}"

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
        f"check_phase={time.monotonic() - killed_at:.1f}s "
        f"planned={dict(Counter(point.mode for point in points))} landed={dict(landed)} "
        f"after_an_ack={after_an_ack} runs={len(acks.runs)} "
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
    must finish the job. The kills walk from the writer's "opening" announcement to a bit past
    a typical first open, as long as one takes here and now (measured, then re-measured by
    every writer that got through its open)."""
    seed = campaign_seed(backend.name)
    rng = random.Random(seed)
    ack_file = tmp_path / "acks.jsonl"
    pid = writers.fork(rng.randrange(2**32), backend.new_target(), ack_file)
    writers.wait_for(pid, "the end of its open", lambda state: state.opened, PROGRESS_TIMEOUT)
    writers.kill(pid)  # one first open measured

    incomplete: list[str] = []
    landed: Counter[str] = Counter()
    attempts = 40
    for attempt in range(attempts):
        target = backend.new_target()
        share = 1.2 * attempt / (attempts - 1)
        pid = writers.fork(rng.randrange(2**32), target, ack_file)
        writers.wait_for(pid, "its open", lambda state: state.opening, PROGRESS_TIMEOUT)
        delay = share * writers.pace.open_seconds()
        writers.linger(delay)
        landed[writers.kill(pid).where()] += 1
        try:
            asyncio.run(check_vault(target, Acknowledged()))
        except MissingDefaults as exc:
            incomplete.append(f"killed {delay * 1000:.0f} ms into its open: {exc}")
    if incomplete:
        raise MissingDefaults(f"seed {seed}: " + "; ".join(incomplete))
    assert landed["in open"] > 0, f"no kill landed inside the first open: {landed}"
    print(f"{backend.name} first open {writers.pace.open_seconds() * 1000:.0f} ms, {dict(landed)}")


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
