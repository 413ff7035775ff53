"""The Celery side of distributed steps: the application, the ``strongroom.step`` task a worker
runs, and the executor a coordinator sends steps through.

Why these settings (docs/orchestrator.md, "Workers"):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after its
  step ended, and a worker process that dies hands it back to the broker, so no step is lost
  with a worker; the step claim makes the redelivery harmless (it finds the attempt claimed);
- ``worker_prefetch_multiplier=1``: a worker holds one message per free process, so a slow
  step does not hide queued ones from idle workers;
- no result backend: the answer is the attempt's step claim, in the vault both sides share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from celery import Celery

from strongroom.errors import OperationTimeout, StorageIOError, ValidationError
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.orchestrator import StepJob
from strongroom.orchestrator.remote import LEASE_SECONDS, ClaimExecutor, run_claimed_step
from strongroom.secrets import scrub_text, shown_url
from strongroom.vault import Vault

if TYPE_CHECKING:
    from strongroom.orchestrator.remote import Outcome

__all__ = [
    "BROKER_ENV",
    "DEFAULT_QUEUE",
    "STEP_TASK",
    "CeleryExecutor",
    "WorkerSettings",
    "celery_app",
]

BROKER_ENV: Final = "STRONGROOM_BROKER_URL"
STEP_TASK: Final = "strongroom.step"
DEFAULT_QUEUE: Final = "strongroom"

# What `strongroom worker` passes to its pool processes (they inherit the environment).
_VAULT_ENV: Final = "STRONGROOM_URL"
_BLOBS_ENV: Final = "STRONGROOM_BLOBS_URL"
_TOOL_PATH_ENV: Final = "STRONGROOM_TOOL_PATH"
_WORKDIR_ENV: Final = "STRONGROOM_WORKER_WORKDIR"
_NAME_ENV: Final = "STRONGROOM_WORKER_NAME"

_REVOKE_SECONDS: Final = 5.0  # an unreachable broker does not hold up a cancel longer

_JOB_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(StepJob))


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker process runs steps with: its vault, its tools, its working directory."""

    vault_url: str
    blobs_url: str | None
    tool_paths: tuple[Path, ...]
    workdir: Path
    name: str

    @classmethod
    def from_env(cls) -> WorkerSettings:
        vault_url = os.environ.get(_VAULT_ENV)
        if not vault_url:
            raise ValidationError(
                f"a worker needs its vault: ${_VAULT_ENV} is not set (start workers with "
                "`strongroom --vault URL worker`)",
                operation="worker",
                reason="no_vault",
            )
        paths = tuple(
            Path(p).resolve() for p in os.environ.get(_TOOL_PATH_ENV, "").split(os.pathsep) if p
        )
        return cls(
            vault_url=vault_url,
            blobs_url=os.environ.get(_BLOBS_ENV) or None,
            tool_paths=paths,
            workdir=Path(os.environ.get(_WORKDIR_ENV) or ".").resolve(),
            name=os.environ.get(_NAME_ENV) or socket.gethostname(),
        )

    def environment(self) -> dict[str, str]:
        """The variables that give a worker process these settings."""
        env = {
            _VAULT_ENV: self.vault_url,
            _TOOL_PATH_ENV: os.pathsep.join(str(p) for p in self.tool_paths),
            _WORKDIR_ENV: str(self.workdir),
            _NAME_ENV: self.name,
        }
        if self.blobs_url is not None:
            env[_BLOBS_ENV] = self.blobs_url
        return env


def parse_job(message: Any) -> StepJob:
    """A job from a message's argument: exactly the `StepJob` fields, of their types (a
    message is input from the network like any other)."""
    if not isinstance(message, dict) or set(message) != _JOB_FIELDS:
        raise ValidationError(
            "a step message must carry exactly the step job's fields",
            operation="worker",
            reason="bad_message",
        )
    for name, value in message.items():
        if name == "attempt":
            valid = type(value) is int and 1 <= value <= 1_000_000
        else:
            valid = isinstance(value, str) and 0 < len(value) <= 256
        if not valid:
            raise ValidationError(
                f"a step message's {name} is not a valid value",
                operation="worker",
                reason="bad_message",
            )
    return StepJob(**message)


class _ProcessVault:
    """The vault of this pool process: opened on its first task, on an event loop the process
    keeps, and reused by every task after it (opening a vault costs more than a small step).
    Dropped and opened again after a storage error."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._vault: Vault | None = None
        self._key: tuple[str, str | None] | None = None

    def run(self, settings: WorkerSettings, job: StepJob) -> Outcome:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            return self._loop.run_until_complete(self._run(settings, job))
        except (StorageIOError, OperationTimeout):
            self._loop.run_until_complete(self._drop())
            raise

    async def _run(self, settings: WorkerSettings, job: StepJob) -> Outcome:
        key = (settings.vault_url, settings.blobs_url)
        if self._vault is None or self._key != key:
            await self._drop()
            self._vault = await Vault.open(
                settings.vault_url, blobs_url=settings.blobs_url, create=False
            )
            self._key = key
        runner = ToolRunner(
            self._vault, RunnerOptions(workdir=settings.workdir, tool_paths=settings.tool_paths)
        )
        worker = f"{settings.name}:{os.getpid()}"
        return await run_claimed_step(self._vault, runner, job, worker=worker)

    async def _drop(self) -> None:
        vault, self._vault, self._key = self._vault, None, None
        if vault is not None:
            with contextlib.suppress(Exception):
                await vault.close()


_PROCESS = _ProcessVault()


def _run_step_task(message: dict[str, Any]) -> str:
    """The ``strongroom.step`` task: run one attempt here (if it is still the current one and
    nobody claimed it). Returns the outcome (logged by Celery; no result backend)."""
    job = parse_job(message)
    settings = WorkerSettings.from_env()
    for delay in (1, 2, 4, 8, 16, None):
        try:
            return _PROCESS.run(settings, job)
        except (StorageIOError, OperationTimeout):
            # The vault did not answer (a restart, a network blip). Before the claim, trying
            # again is safe; after it, a retry finds the claim taken and the coordinator
            # declares it lost when its heartbeat stops.
            if delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def celery_app(broker_url: str) -> Celery:
    """The Celery application of workers and coordinators on ``broker_url`` (RabbitMQ:
    ``amqp://user:password@host:5672/vhost``; Redis: ``redis://host:6379/0``)."""
    app = Celery("strongroom", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Redis redelivers an unacknowledged message after this many seconds: longer than
        # any step, or a running step is delivered again (the claim keeps it from running
        # twice, but it occupies a worker until it finds that out).
        broker_transport_options={"visibility_timeout": 24 * 3600},
    )
    app.task(name=STEP_TASK)(_run_step_task)
    return app


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CeleryExecutor(ClaimExecutor):
    """Sends each step attempt to the broker's ``queue`` and waits on its step claim."""

    def __init__(
        self,
        vault: Vault,
        app: Celery,
        *,
        queue: str = DEFAULT_QUEUE,
        lease: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(vault, self._send_job, revoke=self._revoke_job, lease=lease)
        self.app = app
        self.queue = queue

    async def _revoke_job(self, job: StepJob) -> None:
        """Withdraw a cancelled run's job (Celery's revoke, a broadcast to the workers: one
        that receives it later drops it unread). Best effort: a worker that missed the
        broadcast finds the run cancelled and skips the job, and one already running the
        step kills it when it sees the cancel in the vault. The broadcast runs on a daemon
        thread of its own: kombu retries a lost broker without end, and such a thread must
        neither hold up the cancel nor keep the process from exiting."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def revoke() -> None:
            with contextlib.suppress(Exception):  # kombu's connection errors are many kinds
                self.app.control.revoke(job.request_id)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, done)

        threading.Thread(target=revoke, name="strongroom-revoke", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, _REVOKE_SECONDS)

    async def _send_job(self, job: StepJob) -> None:
        await asyncio.to_thread(self._publish, job)

    def _publish(self, job: StepJob) -> None:
        try:
            self.app.send_task(
                STEP_TASK,
                args=[dataclasses.asdict(job)],
                queue=self.queue,
                task_id=job.request_id,
                retry=True,
            )
        except Exception as exc:  # kombu's connection errors are many kinds
            shown, secrets = shown_url(str(self.app.conf.broker_url))
            raise StorageIOError(
                f"cannot send step {job.step_id} to the broker {shown}: "
                f"{type(exc).__name__}: "
                f"{scrub_text(str(exc), secrets)[:300]}",
                operation="worker.dispatch",
                reason="broker_unreachable",
            ) from None
