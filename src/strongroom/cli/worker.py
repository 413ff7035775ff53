"""`strongroom worker`: a Celery worker that runs playbook steps sent by `strongroom run
--executor celery`, against this vault, with these tools, in this machine's sandbox."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from strongroom.cli._context import JsonFlag, cli_state, reported_errors, tool_paths
from strongroom.errors import (
    NotFound,
    StorageIOError,
    StrongroomError,
    ValidationError,
    error_from_info,
)
from strongroom.models import ErrorInfo
from strongroom.secrets import safe_url, scrub_text, shown_url
from strongroom.vault import Vault

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["BROKER_ENV", "broker_app", "queue_names", "worker"]

BROKER_ENV: Final = "STRONGROOM_BROKER_URL"
"""strongroom.workers.BROKER_ENV (named here so that other commands need not import Celery)."""

_SCHEMES: Final = ("amqp", "amqps", "pyamqp", "redis", "rediss")
_PROBE_SECONDS: Final = 10
_VAULT_PROBE_SECONDS: Final = 120  # longer than any backend's own connect timeouts

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        envvar=BROKER_ENV,
        show_envvar=True,
        help="The broker's URL: amqp://USER:PASSWORD@HOST:5672/VHOST (RabbitMQ) or "
        "redis://HOST:6379/0.",
    ),
]
QueueOption = Annotated[
    list[str] | None,
    typer.Option(
        "--queue",
        "--queues",
        help="The queue(s) this worker takes steps from: repeat the option or separate names "
        "with commas (default: strongroom).",
        show_default=False,
    ),
]
_MAX_QUEUES: Final = 32


def queue_names(given: list[str] | None) -> list[str]:
    """The queues of ``--queue`` (repeated, or comma-separated), each checked."""
    names = [n for value in given or ["strongroom"] for n in value.split(",")]
    if not 1 <= len(names) <= _MAX_QUEUES:
        raise ValidationError(
            f"--queue: 1 to {_MAX_QUEUES} queues", operation="worker", field="--queue"
        )
    for name in names:
        if not name or len(name) > 200 or not name.replace("-", "").replace(".", "").isalnum():
            raise ValidationError(
                "--queue: letters, digits, '-' and '.' (at most 200) in each queue name",
                operation="worker",
                field="--queue",
            )
    return list(dict.fromkeys(names))


def _probe_vault(vault_url: str, blobs_url: str | None) -> dict[str, Any] | None:
    """Open and close the vault; the error's info if it cannot be opened."""

    async def open_close() -> None:
        vault = await Vault.open(vault_url, blobs_url=blobs_url, create=False)
        await vault.close()

    try:
        asyncio.run(open_close())
    except StrongroomError as exc:
        return exc.to_info().model_dump(mode="json")
    except Exception as exc:  # said as an I/O error, the URL's secrets scrubbed
        _, secrets = shown_url(vault_url)
        message = scrub_text(f"{type(exc).__name__}: {exc}", secrets)[:300]
        return ErrorInfo(code="io_error", message=message, details={}).model_dump(mode="json")
    return None


def _check_vault(vault_url: str, blobs_url: str | None) -> None:
    """The vault must exist: a worker creates none. It is opened in a child process, because
    Celery forks its pool processes from this one (again whenever one dies) and a blob store
    on S3 starts obstore's Tokio runtime, whose threads a fork does not copy: a pool process
    forked after this process opened S3 would hang at its first blob."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    try:
        info = pool.submit(_probe_vault, vault_url, blobs_url).result(timeout=_VAULT_PROBE_SECONDS)
    except (BrokenProcessPool, FuturesTimeout) as exc:
        # A probe stuck past every backend's own timeouts is stopped, not waited for.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        why = "the probe process died" if isinstance(exc, BrokenProcessPool) else "no answer"
        raise StorageIOError(
            f"the vault at {safe_url(vault_url)} could not be opened: {why}",
            operation="worker",
            reason="vault_unreachable",
        ) from None
    pool.shutdown(wait=True)
    if info is None:
        return
    error = error_from_info(ErrorInfo.model_validate(info))
    if isinstance(error, NotFound):
        raise NotFound(
            f"no vault at {safe_url(vault_url)}: a worker runs steps of an existing "
            "vault (create it with `strongroom init`)",
            operation="worker",
        )
    raise error


def broker_app(broker: str | None, operation: str) -> Celery:
    """The Celery application on ``broker``, once the broker answered; a missing, malformed
    or unreachable broker is a clear error, before anything is sent or started."""
    if not broker:
        raise ValidationError(
            f"no broker: give --broker URL or set ${BROKER_ENV} (e.g. "
            "amqp://guest:guest@127.0.0.1:5672//)",
            operation=operation,
            reason="no_broker",
        )
    shown, secrets = shown_url(broker)
    scheme = broker.split("://", 1)[0] if "://" in broker else ""
    if scheme not in _SCHEMES:
        raise ValidationError(
            f"--broker {shown[:120]!r}: expected a URL starting with "
            + ", ".join(f"{s}://" for s in _SCHEMES),
            operation=operation,
            reason="bad_broker",
        )
    from strongroom.workers import celery_app  # Celery loads only for the commands using it

    app = celery_app(broker)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=_PROBE_SECONDS)
    except Exception as exc:  # kombu's and the transports' errors are many kinds
        raise StorageIOError(
            f"cannot reach the broker {shown}: {type(exc).__name__}: "
            f"{scrub_text(str(exc), secrets)[:300]}",
            operation=operation,
            reason="broker_unreachable",
        ) from None
    return app


def worker(
    ctx: typer.Context,
    broker: BrokerOption = None,
    queue: QueueOption = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Steps this worker runs at once.")
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option("--name", help="This worker's name in step claims (default: the host name)."),
    ] = None,
    tool_path: Annotated[
        list[Path] | None,
        typer.Option("--tool-path", help="Folder with tool modules (repeatable)."),
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="The tools' working directory.")
    ] = Path("."),
    json_flag: JsonFlag = False,
) -> None:
    """Run steps sent to QUEUE on the broker, until stopped (SIGTERM or Ctrl-C: the steps
    running finish first; a SIGKILL hands them back to the broker)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if state.vault_url.startswith("memory:"):
            raise ValidationError(
                "a worker needs a vault it shares with the coordinator: memory:// is private "
                "to one process (use PostgreSQL + S3, or an embedded vault on this machine)",
                operation="worker",
                reason="unshared_vault",
            )
        worker_name = name or socket.gethostname()
        if not worker_name or len(worker_name) > 128 or any(c in worker_name for c in "@: \n"):
            raise ValidationError(
                "--name: 1-128 characters without '@', ':', spaces or newlines",
                operation="worker",
                field="--name",
            )
        queues = queue_names(queue)
        paths = tool_paths(tool_path)

        _check_vault(state.vault_url, state.blobs_url)
        app = broker_app(broker, "worker")
        from strongroom.workers import WorkerSettings

        settings = WorkerSettings(
            vault_url=state.vault_url,
            blobs_url=state.blobs_url,
            tool_paths=paths,
            workdir=workdir.resolve(),
            name=worker_name,
        )
        os.environ.update(settings.environment())
        app.worker_main(
            [
                "worker",
                f"--concurrency={concurrency}",
                f"--queues={','.join(queues)}",
                f"--hostname={worker_name}@%h",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--prefetch-multiplier=1",
            ]
        )
