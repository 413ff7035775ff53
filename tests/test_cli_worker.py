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

from _keys import registered_key
from _lane import TOOLS_DIR, manifest, policy, tool
from strongroom import SyncVault
from strongroom.cli import app
from strongroom.cli._context import exit_code_for
from strongroom.cli._executor import DEFAULT_QUEUE, choose
from strongroom.errors import ValidationError
from strongroom.models import ProjectExecutor
from strongroom.workers.broker import DEFAULT_QUEUE as WORKERS_DEFAULT_QUEUE
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
        (("worker", "--broker", "amqp://x//", "--queues", "a,,b"), None),
        (("worker", "--broker", "amqp://x//", "--queue", "a", "--queue", "b c"), None),
        (
            ("worker", "--broker", "amqp://x//", "--queues", ",".join(f"q{n}" for n in range(33))),
            None,
        ),
        (("run", "p@1.0.0", "--executor", "elsewhere"), None),
        (("run", "p@1.0.0", "--executor", "celery"), "no_broker"),
        (("run", "p@1.0.0", "--executor", "celery", "--queue", "a_b"), None),
        (("run", "p@1.0.0", "--executor", "celery", "--queue", "a,b"), None),
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


# -- executor: in the project config (docs/workers.md, "In the project config") ---------------

GATED_PLAYBOOK = {
    "kind": "playbook",
    "playbook_id": "gated-sums",
    "name": "Gated sums",
    "version": "1.0.0",
    "owner": "alice",
    "steps": [{"step_id": "a", "tool": "gated@1.0.0", "inputs": {"x": {"value": 1}}}],
}


def _farm(version: str, executor: dict[str, Any] | None) -> dict[str, Any]:
    """A project whose runs go to workers (``executor``), listing the gated playbook."""
    config: dict[str, Any] = {
        "kind": "project_config",
        "project_id": "farm",
        "name": "Farm",
        "version": version,
        "playbooks": ["gated-sums"],
    }
    if executor is not None:
        config["executor"] = executor
    return config


def _publish(vault: Path, key: str, *definitions: dict[str, Any]) -> None:
    folder = vault.parent / "definitions"
    folder.mkdir(exist_ok=True)
    files = []
    for definition in definitions:
        name = next(v for k, v in definition.items() if k.endswith("_id"))
        files.append(folder / f"{name}-{definition['version']}.json")
        files[-1].write_text(json.dumps(definition), encoding="utf-8")
    result = _cli("--vault", str(vault), "registry", "publish", *map(str, files), "--key", key)
    assert result.exit_code == 0, (result.stdout, result.stderr)


@pytest.fixture
def farm(vault: Path) -> str:
    """The vault holds project ``farm`` 1.0.0 with ``executor: {kind: celery, queue:
    nightly}`` and a one-step playbook whose A2 tool waits for an approval (a local run
    pauses before any tool runs: no sandbox, no broker needed). Returns the signing key."""
    key = registered_key(lambda *a: _cli("--vault", str(vault), *a), vault.parent, "alice")
    gated = tool("gated", "lane_tools:add", level="A2")
    _publish(vault, key, policy(), manifest([gated]), GATED_PLAYBOOK)
    _publish(vault, key, _farm("1.0.0", {"kind": "celery", "queue": "nightly"}))
    return key


def _runs(vault: Path) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(
        _cli("--vault", str(vault), "--json", "runs", "list").stdout
    )["items"]
    return listed


def test_a_project_config_naming_celery_sends_runs_to_workers(vault: Path, farm: str) -> None:
    """No --executor: the project config's ``executor: celery`` decides, so with no broker
    (no --broker, no $STRONGROOM_BROKER_URL) the run is refused as --executor celery is,
    naming the config, before anything is written; an explicit --executor local wins."""
    refused = _cli("--vault", str(vault), "--json", "run", "gated-sums@1.0.0", "--project", "farm")
    assert refused.exit_code == 2, refused.output
    error = _error(refused)
    assert (error["code"], error["details"]["reason"]) == ("validation_error", "no_broker")
    assert "project config farm@1.0.0" in error["message"]
    assert "STRONGROOM_BROKER_URL" in error["message"]
    assert _runs(vault) == []

    broker = f"amqp://strongroom:{PASSWORD}@127.0.0.1:{_closed_port()}/vhost"
    unreachable = _cli(
        "--vault", str(vault), "--json", "run", "gated-sums@1.0.0", "-p", "farm", "--broker", broker
    )  # fmt: skip
    assert unreachable.exit_code == 6, unreachable.output  # the config's celery, tried
    assert _error(unreachable)["details"]["reason"] == "broker_unreachable"
    assert PASSWORD not in unreachable.output
    assert _runs(vault) == []

    local = _cli(
        "--vault", str(vault), "--json", "run", "gated-sums@1.0.0", "--project", "farm",
        "--executor", "local", "--tool-path", str(TOOLS_DIR),
    )  # fmt: skip
    assert local.exit_code == exit_code_for("approval_required"), local.output
    assert json.loads(local.stdout.splitlines()[-1])["status"] == "paused"
    assert [run["status"] for run in _runs(vault)] == ["paused"]

    without = _cli(
        "--vault", str(vault), "--json", "run", "gated-sums@1.0.0", "--idempotency-key", "k"
    )
    assert without.exit_code == exit_code_for("approval_required"), without.output  # no project


def test_resume_follows_the_config_the_run_was_planned_with(vault: Path, farm: str) -> None:
    """`resume` without --executor reads the project config version of the run's plan (by
    its digest), not the one the registry resolves now."""
    started = _cli(
        "--vault", str(vault), "--json", "run", "gated-sums@1.0.0", "--project", "farm",
        "--executor", "local", "--tool-path", str(TOOLS_DIR),
    )  # fmt: skip
    assert started.exit_code == exit_code_for("approval_required"), started.output
    run_id = json.loads(started.stdout.splitlines()[-1])["run_id"]
    _publish(vault, farm, _farm("1.0.1", {"kind": "local"}))  # `farm` now resolves to 1.0.1

    refused = _cli("--vault", str(vault), "--json", "resume", run_id, "--tool-path", str(TOOLS_DIR))
    assert refused.exit_code == 2, refused.output
    error = _error(refused)
    assert error["details"]["reason"] == "no_broker"
    assert "project config farm@1.0.0" in error["message"]

    local = _cli(
        "--vault", str(vault), "--json", "resume", run_id, "--executor", "local",
        "--tool-path", str(TOOLS_DIR),
    )  # fmt: skip
    assert _error(local)["code"] == "digest_drift", local.output  # past the executor: the engine
    assert [run["status"] for run in _runs(vault)] == ["paused"]

    missing = _cli(
        "--vault", str(vault), "--json", "resume", "0193f1c2-0000-7000-8000-000000000000"
    )
    assert _error(missing)["code"] == "not_found", missing.output  # the engine's own error


def test_the_executor_flag_wins_then_the_config_then_local() -> None:
    nightly = ProjectExecutor(kind="celery", queue="nightly")
    config = "project config farm@1.0.0"
    assert DEFAULT_QUEUE == WORKERS_DEFAULT_QUEUE
    assert (choose(None, None).kind, choose(None, None).queue) == ("local", DEFAULT_QUEUE)
    chosen = choose(None, None, nightly, config)
    assert (chosen.kind, chosen.queue, chosen.source) == ("celery", "nightly", config)
    assert choose(None, "urgent", nightly, config).queue == "urgent"
    assert choose(None, None, ProjectExecutor(kind="celery"), config).queue == DEFAULT_QUEUE
    flagged = choose("local", None, nightly, config)
    assert (flagged.kind, flagged.source) == ("local", "--executor")
    assert choose("celery", None).queue == DEFAULT_QUEUE


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
