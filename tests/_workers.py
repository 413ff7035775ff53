"""Shared set-up of the Celery worker tests: the broker (the machine's RabbitMQ, or
$STRONGROOM_TEST_BROKER_URL), a queue per test, and real `strongroom worker` processes, each in
its own session so a test can kill one whole worker (main process, pool and tools) as a
machine's death would."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from _lane import TOOLS_DIR
from strongroom.orchestrator.state import STATE_KEY, PlanState
from strongroom.vault import Vault
from strongroom.workers import celery_app

BROKER = os.environ.get("STRONGROOM_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
DEADLINE = 300.0  # seconds: generous, a loaded CI machine is slow; nothing waits this long


def broker_or_skip() -> None:
    """Skip (fail under CI=true) when no broker answers, saying what to start."""
    from kombu import Connection

    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    deadline = time.monotonic() + (120 if ci else 5)  # CI may have just started RabbitMQ
    while True:
        try:
            with Connection(BROKER, connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1, timeout=5)
            return
        except Exception as exc:
            if time.monotonic() < deadline:
                time.sleep(1)
                continue
            message = (
                f"no broker at {BROKER} ({type(exc).__name__}): start RabbitMQ "
                "(`rabbitmq-server -detached`) or set STRONGROOM_TEST_BROKER_URL"
            )
        if ci:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def fresh_queue() -> Iterator[str]:
    """A queue of this test's own (deleted after it), so the machine's broker may be shared."""
    name = f"sr-test-{uuid.uuid4().hex[:12]}"
    yield name
    app = celery_app(BROKER)
    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        channel.queue_delete(name)


def queued(queue: str) -> int:
    """Messages waiting in ``queue`` (0 while it does not exist yet)."""
    app = celery_app(BROKER)
    try:
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(queue, passive=True).message_count)
    except Exception:  # not declared yet: nothing was published
        return 0


class Workers:
    """`strongroom worker` processes (concurrency 1) on one queue against one vault; stopped
    (SIGTERM, then SIGKILL of their sessions) at the end."""

    def __init__(
        self,
        root: Path,
        queue: str,
        vault_url: str,
        blobs_url: str | None = None,
        broker: str = BROKER,
    ) -> None:
        self.root = root
        self.broker = broker
        self.queue = queue
        self.vault_url = vault_url
        self.blobs_url = blobs_url
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._started = 0

    def start(self, count: int) -> None:
        for _ in range(count):
            self.start_one(len(self.processes))

    def start_one(self, slot: int) -> None:
        """Start a worker named ``w<slot>`` (replacing a dead one of that slot)."""
        self._started += 1
        log = open(self.root / f"worker-{self._started}.log", "wb")  # noqa: SIM115 - closed in stop
        self._logs.append(log)
        command = [sys.executable, "-m", "strongroom", "--vault", self.vault_url]
        if self.blobs_url is not None:
            command += ["--blobs", self.blobs_url]
        command += ["worker", "--broker", self.broker, "--queue", self.queue, "--name", f"w{slot}"]
        command += ["--tool-path", str(TOOLS_DIR), "--workdir", str(self.root / "work")]
        self.processes[slot] = subprocess.Popen(
            command, stdout=log, stderr=log, start_new_session=True
        )

    def kill_worker(self, slot: int) -> None:
        """SIGKILL worker ``slot`` whole (its session: main process, pool, tools), as if its
        machine died, and wait for its main process."""
        process = self.processes[slot]
        with_children = [process.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            with_children += [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in with_children:  # a tool in a session of its own goes too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for slot, process in self.processes.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill_worker(slot)
        for log in self._logs:
            log.close()

    def log(self) -> str:
        return "\n".join(
            (self.root / f"worker-{n}.log").read_text(errors="replace")[-2000:]
            for n in range(1, self._started + 1)
        )


def redis_broker(root: Path) -> Iterator[str]:
    """A Redis of this test's own on a free port (``redis://`` URL), keeping nothing on disk;
    skipped (failed under CI=true) without `redis-server`."""
    server = shutil.which("redis-server")
    if server is None:
        message = "no redis-server: install Redis (`apt-get install redis-server`)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(root)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + DEADLINE
        while True:  # until it answers
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


async def step_sums(vault: Vault, run_id: str) -> dict[str, int]:
    """Each step's output ``sum`` (the test tools' output), from the run's latest plan."""
    plan = PlanState.model_validate((await vault.snapshots.load(run_id)).state.data[STATE_KEY])
    found = {}
    for step_id, state in plan.steps.items():
        assert state.output_artifact_id is not None
        found[step_id] = json.loads(await vault.artifacts.get_bytes(state.output_artifact_id))[
            "sum"
        ]
    return found


async def completed_steps(vault: Vault, run_id: str) -> list[str]:
    """The steps whose end the run's log records (``step.completed``), sorted, repeats kept:
    a step recorded twice shows twice."""
    return sorted(
        e.phase or "" for e in await vault.logs.read(run_id) if e.event == "step.completed"
    )
