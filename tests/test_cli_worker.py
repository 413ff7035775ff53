"""What `strongroom worker` and `run --executor celery` refuse before anything starts or is
written (docs/cli.md, "worker"; docs/workers.md, "Security"), and the step message a worker
accepts: no broker needed, every case is refused before one is reached."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from strongroom import SyncVault
from strongroom.cli import app
from strongroom.errors import ValidationError
from strongroom.workers.broker import parse_job

PASSWORD = "Br0ker-s3cret-pw"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("STRONGROOM_BROKER_URL", raising=False)
    path = tmp_path / "vault"
    with SyncVault.open(path):
        pass
    return path


def _error(result: Result) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(result.stdout)["error"]
    return error


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("worker",), "no_broker"),
        (("worker", "--broker", "nats://127.0.0.1:4222"), "bad_broker"),
        (("worker", "--broker", "not a url"), "bad_broker"),
        (("worker", "--broker", "amqp://x//", "--name", "a@b"), None),
        (("worker", "--broker", "amqp://x//", "--queue", "q/../x"), None),
        (("run", "p@1.0.0", "--executor", "elsewhere"), None),
        (("run", "p@1.0.0", "--executor", "celery"), "no_broker"),
        (("resume", "0193f1c2-0000-7000-8000-000000000000", "--executor", "celery"), "no_broker"),
    ],
)
def test_bad_worker_settings_are_refused_before_anything_runs(
    vault: Path, args: tuple[str, ...], reason: str | None
) -> None:
    result = _cli("--vault", str(vault), "--json", *args)
    assert result.exit_code == 2, result.output
    error = _error(result)
    assert error["code"] == "validation_error"
    if reason is not None:
        assert error["details"]["reason"] == reason
    assert _cli("--vault", str(vault), "--json", "runs", "list").stdout.count("run_id") == 0


@pytest.mark.parametrize("command", [("worker",), ("run", "p@1.0.0", "--executor", "celery")])
def test_a_vault_no_worker_can_share_is_refused(command: tuple[str, ...]) -> None:
    result = _cli("--vault", "memory://", "--json", *command, "--broker", "amqp://x//")
    assert result.exit_code == 2, result.output
    assert _error(result)["details"]["reason"] == "unshared_vault"


@pytest.mark.parametrize("command", [("worker",), ("run", "p@1.0.0", "--executor", "celery")])
def test_an_unreachable_broker_is_an_io_error_that_never_shows_its_password(
    vault: Path, command: tuple[str, ...]
) -> None:
    broker = f"amqp://strongroom:{PASSWORD}@127.0.0.1:{_closed_port()}/vhost"
    for as_json in (False, True):
        flags = ["--json"] if as_json else []
        result = _cli("--vault", str(vault), *flags, *command, "--broker", broker)
        assert result.exit_code == 6, result.output  # io_error
        assert PASSWORD not in result.output
        assert "[REDACTED]" in result.output
        if as_json:
            assert _error(result)["details"]["reason"] == "broker_unreachable"
    assert _cli("--vault", str(vault), "--json", "runs", "list").stdout.count("run_id") == 0


def test_a_worker_needs_an_existing_vault(tmp_path: Path) -> None:
    result = _cli("--vault", str(tmp_path / "typo"), "--json", "worker", "--broker", "amqp://x//")
    assert result.exit_code == 3, result.output
    assert not (tmp_path / "typo").exists()


JOB = {
    "run_id": "0193f1c2-0000-7000-8000-000000000000",
    "step_id": "a",
    "attempt": 1,
    "request_id": "0193f1c2-0000-7000-8000-000000000001",
    "tool_id": "add",
    "manifest_digest": "0" * 64,
    "caller": "local",
}


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        "a string",
        {**JOB, "input": {"x": 1}},  # a payload: messages carry ids and digests only
        {**JOB, "secret": "s"},
        {k: v for k, v in JOB.items() if k != "caller"},
        {**JOB, "attempt": True},
        {**JOB, "attempt": "1"},
        {**JOB, "attempt": 0},
        {**JOB, "attempt": 10**12},
        {**JOB, "run_id": 7},
        {**JOB, "step_id": ""},
        {**JOB, "tool_id": "x" * 257},
    ],
)
def test_a_step_message_is_exactly_a_step_job(message: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job(message)
    assert caught.value.details["reason"] == "bad_message"


def test_a_well_formed_message_is_its_job() -> None:
    job = parse_job(dict(JOB))
    assert (job.run_id, job.step_id, job.attempt) == (JOB["run_id"], "a", 1)


def test_the_celery_settings_the_docs_promise() -> None:
    """docs/workers.md: late acknowledgement, handed back when a worker process dies, one
    message prefetched per process, JSON only, no result backend (answers are step claims)."""
    from strongroom.workers import STEP_TASK, celery_app

    app = celery_app("amqp://guest:guest@127.0.0.1:1//")
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result is True
    assert conf.broker_transport_options["visibility_timeout"] >= 24 * 3600
    assert STEP_TASK in app.tasks
