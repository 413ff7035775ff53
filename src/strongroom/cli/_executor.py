"""Where `strongroom run` and `strongroom resume` send their steps: ``--executor`` when
given; else the ``executor:`` block of the project config (for `run`, the config
``--project`` names; for `resume`, the config version the run was planned with); else the
local process. The queue likewise: ``--queue``, else the config's ``queue``, else
``strongroom``. The broker never comes from a config (a URL can carry a password): it is
``--broker`` or ``$STRONGROOM_BROKER_URL``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final

import pydantic
import typer

from strongroom.cli._context import CliState
from strongroom.cli.worker import broker_app, queue_names
from strongroom.errors import NotFound, ValidationError
from strongroom.models import DefinitionKind, ProjectConfig, ProjectExecutor, RunStatus
from strongroom.orchestrator import StepExecutor
from strongroom.orchestrator.state import STATE_KEY, PlanState
from strongroom.services import parse_ref
from strongroom.vault import Vault

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "DEFAULT_QUEUE",
    "ExecutorChoice",
    "ExecutorOption",
    "RunQueueOption",
    "celery_executor",
    "choose",
    "configured_executor",
    "planned_executor",
    "project_executor",
    "remote_app",
]

DEFAULT_QUEUE: Final = "strongroom"
"""strongroom.workers.DEFAULT_QUEUE (named here so that a local run need not import Celery)."""

ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where steps run: local (this process) or celery (workers started with "
        "`strongroom worker` on the broker). Default: the project config's executor "
        "(run --project; resume: the config the run was planned with), else local.",
        show_default=False,
    ),
]
RunQueueOption = Annotated[
    str | None,
    typer.Option(
        "--queue",
        help="The queue steps are sent to (default: the project config's executor queue, "
        "else strongroom).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class ExecutorChoice:
    kind: str  # "local" or "celery" (anything else is refused by `remote_app`)
    queue: str
    source: str  # what chose it, for the refusals: "--executor" or "project config ID@VERSION"

    @property
    def from_flag(self) -> bool:
        return self.source == "--executor"


def choose(
    executor: str | None,
    queue: str | None,
    config: ProjectExecutor | None = None,
    source: str = "",
) -> ExecutorChoice:
    """The flag wins; else the project config's ``executor`` (``source`` names that
    config); else local. The queue: ``--queue``, else the config's, else the default."""
    if executor is not None:
        return ExecutorChoice(executor, queue or DEFAULT_QUEUE, "--executor")
    if config is not None:
        return ExecutorChoice(config.kind, queue or config.queue or DEFAULT_QUEUE, source)
    return ExecutorChoice("local", queue or DEFAULT_QUEUE, "default")


def remote_app(choice: ExecutorChoice, broker: str | None, state: CliState) -> Celery | None:
    """The Celery application for a celery executor (the broker checked), None for local."""
    if choice.kind == "local":
        return None
    if choice.kind != "celery":
        raise ValidationError(
            f"--executor {choice.kind[:40]!r}: expected local or celery",
            operation="cli.run",
            field="--executor",
        )
    what = "--executor celery" if choice.from_flag else f"{choice.source} (executor: celery)"
    if "," in choice.queue:  # one queue a run's steps go to; workers may take several
        raise ValidationError("--queue: one queue name", operation="cli.run", field="--queue")
    queue_names([choice.queue])  # a name no worker could listen on is refused here
    if state.vault_url.startswith("memory:"):
        raise ValidationError(
            f"{what} needs a vault the workers share: memory:// is private to this process",
            operation="cli.run",
            reason="unshared_vault",
        )
    try:
        return broker_app(broker, "cli.run")
    except ValidationError as exc:
        if choice.from_flag or exc.details.get("reason") != "no_broker":
            raise
        message = f"{what} sends the steps to workers, but {exc.message}"
        raise ValidationError(message, **exc.details) from None


async def project_executor(vault: Vault, project: str) -> tuple[ProjectExecutor | None, str]:
    """The ``executor`` of the project config ``project`` (``ID[@SELECTOR]``) resolved as the
    orchestrator resolves it for `run --project`, and a name for it."""
    try:
        ref = parse_ref(project, operation="orchestrator.start")
    except ValidationError as exc:
        raise ValidationError(f"project: {exc.message}", **exc.details) from None
    version, config = await vault.registry.get(DefinitionKind.PROJECT_CONFIG, ref.id, ref.selector)
    assert isinstance(config, ProjectConfig)
    return config.executor, f"project config {config.project_id}@{version.version}"


async def planned_executor(vault: Vault, run_id: str) -> tuple[ProjectExecutor | None, str]:
    """The ``executor`` of the project config version a run was planned with (by its digest,
    so a newer version of the config changes nothing for a run already started). None when
    the run has no such plan or names no config: `Orchestrator.resume` then reports what is
    wrong (a missing or completed run, no plan) as it always does. A config the plan names
    but this vault lacks (an import without it) is `NotFound`, as it is for the resume."""
    try:
        run = await vault.runs.get(run_id)
    except (NotFound, ValidationError):
        return None, ""
    if run.status is RunStatus.COMPLETED or await vault.snapshots.latest_revision(run_id) == 0:
        return None, ""
    snapshot = await vault.snapshots.load(run_id)
    raw = snapshot.state.data.get(STATE_KEY)
    if not isinstance(raw, dict):
        return None, ""
    try:
        plan = PlanState.model_validate(raw)
    except pydantic.ValidationError:
        return None, ""
    if plan.project_id is None or plan.project_digest is None:
        return None, ""
    version, config = await vault.registry.get(
        DefinitionKind.PROJECT_CONFIG, plan.project_id, f"sha256:{plan.project_digest}"
    )
    assert isinstance(config, ProjectConfig)
    return config.executor, f"project config {config.project_id}@{version.version}"


def celery_executor(
    vault: Vault, app: Celery | None, choice: ExecutorChoice
) -> StepExecutor | None:
    """The step executor of a checked choice: None (the local lane) without an application."""
    if app is None:
        return None
    from strongroom.workers import CeleryExecutor  # Celery loads only for the runs using it

    return CeleryExecutor(vault, app, queue=choice.queue)


async def configured_executor(
    vault: Vault,
    queue: str | None,
    broker: str | None,
    state: CliState,
    *,
    project: str | None = None,
    run_id: str | None = None,
) -> StepExecutor | None:
    """No --executor: the project config's choice (`run --project`: that config; `resume`
    of ``run_id``: the config version the run was planned with), the broker checked before
    anything is written."""
    if run_id is not None:
        config, source = await planned_executor(vault, run_id)
    else:
        assert project is not None
        config, source = await project_executor(vault, project)
    choice = choose(None, queue, config, source)
    return celery_executor(vault, remote_app(choice, broker, state), choice)
