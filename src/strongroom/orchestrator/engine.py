"""The orchestrator: walk a playbook's steps in dependency order through the governed
execution lane, persist after every transition, resume exactly where a run stopped.

    orchestrator = Orchestrator(vault, RunnerOptions(workdir=Path("project")))
    result = await orchestrator.start("data-quality-nightly@production",
                                      project="customer-data-quality", inputs={...})
    result = await orchestrator.resume(result.run.run_id)      # after a crash or an approval

Persistence: the run record and a state snapshot (`PlanState` in ``data["orchestrator"]``)
are written at run start, at every step start, completion and failure, and at run end; a
step that settles starts the steps it made ready in the same snapshot, and the snapshot, the
run's progress and the step's log lines are one transaction (`vault.transitions`). A
snapshot is compare-and-set on its revision, so two orchestrators can never both drive one
run: the second one's first write fails with `Conflict`. Each step's output is an artifact
(its persistence role), read back verified on resume.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from strongroom.errors import (
    Conflict,
    DigestDrift,
    NotFound,
    SignatureRequired,
    ValidationError,
)
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import key_run_id
from strongroom.integrity import SigningKey
from strongroom.models import (
    ActorRole,
    AuditEvent,
    DefinitionKind,
    Playbook,
    ProjectConfig,
    Run,
    RunState,
    RunStatus,
    canonical_json,
    utcnow,
)
from strongroom.models.registry import Ref
from strongroom.orchestrator.driver import Driver, RunResult, audit
from strongroom.orchestrator.events import Event
from strongroom.orchestrator.executor import LocalExecutor, StepExecutor
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepState, StepStatus
from strongroom.registry import execution_order
from strongroom.services import parse_ref
from strongroom.services.identity import signed_audit_act

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = ["DigestDrift", "Orchestrator", "RunResult"]

PROJECT_FALLBACK = "playbooks"
_FOREVER = timedelta(days=36500)


class Orchestrator:
    def __init__(
        self,
        vault: Vault,
        options: RunnerOptions | None = None,
        *,
        max_parallel: int = 4,
        actor: str = "local",
        on_event: Callable[[Event], None] | None = None,
        runner: ToolRunner | None = None,
        executor: StepExecutor | None = None,
    ) -> None:
        """``runner`` replaces the default `ToolRunner` (built from ``options``): the
        benchmark passes one that returns at once, to measure the orchestrator alone.
        ``executor`` decides where steps run (default: `LocalExecutor`, here, through the
        runner)."""
        self._vault = vault
        self._runner = runner or ToolRunner(vault, options)
        self._executor: StepExecutor = executor or LocalExecutor(self._runner)
        self._max_parallel = max_parallel
        self._actor = actor
        self._on_event = on_event or (lambda event: None)

    # -- starting ------------------------------------------------------------------------------

    async def start(
        self,
        playbook: str,
        *,
        project: str | None = None,
        inputs: dict[str, Any] | None = None,
        run_id: str | None = None,
        key: str | None = None,
        signer: SigningKey | None = None,
    ) -> RunResult:
        """Resolve the playbook (and project config), create the run, persist the plan and
        drive it. ``inputs`` override the project config's ``settings.defaults``.

        ``key`` (an idempotency key, not with ``run_id``): the run's id is derived from the
        playbook's id and the key (`strongroom.ids.key_run_id`), so starting the same key
        again needs no stored id: the first start runs it; later ones resume an unfinished
        run (a failed or cancelled one continues as the key's next attempt) or return a
        completed one as it is, running nothing. ``signer`` signs such a resume when it is
        forced by policy (see `resume`)."""
        if key is not None:
            if run_id is not None:
                raise ValidationError(
                    "give run_id or key, not both",
                    operation="orchestrator.start",
                    reason="conflicting_arguments",
                )
            scope = f"playbook:{_parse_ref(playbook, 'playbook').id}"
            attempt, latest = await self._vault.runs.by_key(scope, key)
            if latest is None or await self._vault.snapshots.latest_revision(latest.run_id) == 0:
                run_id = key_run_id(scope, key, 0) if latest is None else latest.run_id
            elif latest.status is RunStatus.COMPLETED:
                return await self._finished(latest)
            else:
                return await self.resume(
                    latest.run_id, signer=signer, successor_id=key_run_id(scope, key, attempt + 1)
                )
        plan, playbook_def = await self._plan(playbook, project, inputs or {})
        run = await self._reusable(run_id) if run_id is not None else None
        if run is None:
            run = await self._vault.runs.create(
                project=plan.project_id or PROJECT_FALLBACK,
                actor=self._actor,
                purpose=playbook_def.name,
                playbook={"playbook_id": plan.playbook_id, "version_digest": plan.playbook_digest},
                progress={"steps_total": len(plan.steps), "steps_completed": 0},
                **({"run_id": run_id} if run_id else {}),
            )
        # The plan is saved before the run starts: a run without a snapshot never ran a step.
        state = RunState(progress=run.progress)  # the Driver puts the plan in its data
        drive = self._driver(playbook_def, run.run_id, plan, state, 0)
        await drive.persist()
        if run.status is RunStatus.PENDING:
            await self._vault.runs.start(run.run_id)
        await self._audit("orchestrator.run_started", run.run_id, self._definitions(plan))
        drive.emit(Event.run("run_started", drive))
        return await drive.run()

    async def _reusable(self, run_id: str) -> Run | None:
        """``--run-id`` of a run that exists: only one that was interrupted before its plan
        was saved may be started again (it never ran a step); None if there is no such run."""
        try:
            run = await self._vault.runs.get(run_id)
        except NotFound:
            return None
        if await self._vault.snapshots.latest_revision(run_id) > 0:
            raise Conflict(
                f"run {run_id} already started; continue it with `strongroom resume {run_id}`",
                operation="orchestrator.start",
                run_id=run_id,
                reason="already_started",
            )
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            raise Conflict(
                f"run {run_id} is {run.status.value}; start a new run instead",
                operation="orchestrator.start",
                run_id=run_id,
                reason=run.status.value,
            )
        return run

    async def _plan(
        self, playbook: str, project: str | None, inputs: dict[str, Any]
    ) -> tuple[PlanState, Playbook]:
        project_fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        playbook_ref = _parse_ref(playbook, "playbook")
        if project is not None:
            ref = _parse_ref(project, "project")
            version, config = await self._vault.registry.get(
                DefinitionKind.PROJECT_CONFIG, ref.id, ref.selector
            )
            assert isinstance(config, ProjectConfig)
            defaults = dict(config.settings.defaults)
            project_fields = {
                "project_ref": project,
                "project_id": config.project_id,
                "project_version": version.version,
                "project_digest": version.digest,
            }
            listed = {r.id for r in config.playbooks}
            if listed and playbook_ref.id not in listed:
                raise ValidationError(
                    f"project {config.project_id} does not list playbook "
                    f"{playbook_ref.id} (it lists {', '.join(sorted(listed))})",
                    operation="orchestrator.start",
                    reason="playbook_not_in_project",
                )
        ref = playbook_ref
        version, definition = await self._vault.registry.get(
            DefinitionKind.PLAYBOOK, ref.id, ref.selector
        )
        assert isinstance(definition, Playbook)
        steps = await self._pin_steps(definition)
        plan = PlanState(
            playbook_ref=playbook,
            playbook_id=definition.playbook_id,
            playbook_version=version.version,
            playbook_digest=version.digest,
            inputs={**defaults, **inputs},
            max_parallel=self._max_parallel,
            steps=steps,
            order=list(steps),
            **project_fields,
        )
        return plan, definition

    async def _pin_steps(self, playbook: Playbook) -> dict[str, StepState]:
        """Each step's tool resolved now and pinned by its manifest digest."""
        order = execution_order(playbook)
        steps: dict[str, StepState] = {}
        by_id = {step.step_id: step for step in playbook.steps}
        resolved: dict[str, Any] = {}
        for step_id in order:
            step = by_id[step_id]
            key = str(step.tool)
            if key not in resolved:
                resolved[key] = await self._vault.registry.resolve_tool(step.tool)
            manifest, tool = resolved[key]
            steps[step_id] = StepState(
                step_id=step_id,
                tool_id=tool.tool_id,
                tool_version=tool.version,
                manifest_digest=manifest.digest,
                tool_ref=str(step.tool),
                upstream=sorted(step.upstream()),
                output_role=step.persistence.role,
            )
        return steps

    # -- resuming ------------------------------------------------------------------------------

    async def resume(
        self,
        run_id: str,
        *,
        force: bool = False,
        signer: SigningKey | None = None,
        successor_id: str | None = None,
    ) -> RunResult:
        """Continue a run from its latest snapshot: completed steps are skipped (their
        outputs read back from verified artifacts), the step that was in flight runs again.
        A run that ended failed or cancelled continues as a new run (``previous_run_id``).

        ``force``: run on with definitions that changed since the run started (refused
        otherwise, `DigestDrift`); audited as ``orchestrator.resume_forced``, signed by
        ``signer`` (an operator's personal key) when given, which the vault's policy may
        require (`RegistryPolicy.require_signed_forced_resume`). ``successor_id``: the id of
        the run that continues a failed or cancelled one (an idempotency key's next attempt);
        default a new one."""
        run = await self._vault.runs.get(run_id)
        if run.status is RunStatus.COMPLETED:
            raise Conflict(
                f"run {run_id} already completed; nothing to resume",
                operation="orchestrator.resume",
                run_id=run_id,
                reason="completed",
            )
        if await self._vault.snapshots.latest_revision(run_id) == 0:
            command = _restart_command(run)
            raise Conflict(
                f"run {run_id} stopped before its plan was saved, so no step ran; start it "
                f"again (with the --input values it was given, if any): {command}",
                operation="orchestrator.resume",
                run_id=run_id,
                reason="no_plan",
                command=command,
            )
        snapshot = await self._vault.snapshots.load(run_id)
        raw = snapshot.state.data.get(STATE_KEY)
        if not isinstance(raw, dict):
            raise ValidationError(
                f"run {run_id} was not started by the orchestrator (its state has no plan)",
                operation="orchestrator.resume",
                run_id=run_id,
            )
        plan = PlanState.model_validate(raw)
        playbook_def, drift = await self._check_drift(plan)
        if drift and not force:
            raise DigestDrift(
                f"run {run_id} started with other definitions than the registry resolves now: "
                + "; ".join(f"{d['what']} {d['was'][:12]} -> {d['now'][:12]}" for d in drift)
                + " (resume --force runs on with the new ones; that is audited)",
                operation="orchestrator.resume",
                run_id=run_id,
                drift=drift,
            )
        if drift:
            forced = await self._forced(run_id, drift, signer)
            plan = await self._repin(plan, playbook_def)
            await self._vault.audit.record(forced)
        for step in plan.steps.values():
            if step.status is StepStatus.RUNNING:
                # A worker may still run the attempt that was in flight: its claim is declared
                # lost, so it stops (its next heartbeat is refused) and its answer is never
                # recorded; the step runs again as a new attempt.
                await self._vault.metadata.lose_step_claim(
                    run_id, step.step_id, step.starts, stale_before=utcnow() + _FOREVER
                )
            if step.status is not StepStatus.COMPLETED:
                step.status = StepStatus.PENDING
        state = snapshot.state
        revision = snapshot.record.revision
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            run, state = await self._successor(run, plan, state, successor_id)
            revision = 0
        elif run.status is RunStatus.PENDING or run.status is RunStatus.PAUSED:
            await self._vault.runs.start(run_id)
        if run.last_error is not None and run.status is not RunStatus.FAILED:
            await self._vault.runs.update(run.run_id, last_error=None)
        state.last_error = None
        drive = self._driver(playbook_def, run.run_id, plan, state, revision)
        if revision == 0 or drift:
            # A successor run's first snapshot, or the re-pinned plan of a forced resume. (In
            # place, the first transition of the drive writes the reset statuses anyway.)
            await drive.persist()
        if run.status is RunStatus.PENDING:  # a successor starts once its plan is saved
            await self._vault.runs.start(run.run_id)
        await self._audit(
            "orchestrator.run_resumed",
            run.run_id,
            {"from_run_id": run_id, "completed_steps": plan.completed(), "forced": bool(drift)},
        )
        drive.emit(Event.run("run_resumed", drive))
        return await drive.run()

    async def _forced(
        self, run_id: str, drift: list[dict[str, str]], signer: SigningKey | None
    ) -> AuditEvent:
        """The audit event of a forced resume: who forces it, signed when ``signer`` is
        given (refused unsigned when the policy wants a signature)."""
        operation = "orchestrator.resume"
        if signer is None and self._vault.registry.policy.require_signed_forced_resume:
            raise SignatureRequired(
                "this vault's policy wants `resume --force` signed with an operator's "
                "registered personal key: pass `--key PATH` (`strongroom keys init`, then "
                "`strongroom actors add NAME --public-key FILE --role operator` by an admin)",
                operation=operation,
                run_id=run_id,
            )
        who = await self._vault.identity.who(signer, ActorRole.OPERATOR, operation=operation)
        details: dict[str, Any] = {"drift": drift, **who.audit()}
        if signer is not None:
            content = {"run_id": run_id, "drift": drift}
            details["signed_act"] = signed_audit_act("resume_force", content, signer)
        return AuditEvent(
            event="orchestrator.resume_forced",
            actor=who.name,
            subject_type="run",
            subject_id=run_id,
            details=details,
        )

    async def _check_drift(self, plan: PlanState) -> tuple[Playbook, list[dict[str, str]]]:
        drift: list[dict[str, str]] = []
        ref = Ref.parse(plan.playbook_ref)
        version, definition = await self._vault.registry.get(
            DefinitionKind.PLAYBOOK, ref.id, ref.selector
        )
        assert isinstance(definition, Playbook)
        if version.digest != plan.playbook_digest:
            drift.append(
                {"what": f"playbook {ref}", "was": plan.playbook_digest, "now": version.digest}
            )
            return definition, drift  # the steps may differ wholesale
        if plan.project_ref is not None and plan.project_digest is not None:
            pref = Ref.parse(plan.project_ref)
            pversion = await self._vault.registry.version(
                DefinitionKind.PROJECT_CONFIG, pref.id, pref.selector
            )
            if pversion.digest != plan.project_digest:
                drift.append(
                    {"what": f"project {pref}", "was": plan.project_digest, "now": pversion.digest}
                )
        digests: dict[str, str] = {}
        for step in plan.steps.values():
            if step.tool_ref not in digests:
                manifest, _ = await self._vault.registry.resolve_tool(step.tool_ref)
                digests[step.tool_ref] = manifest.digest
            if digests[step.tool_ref] != step.manifest_digest:
                drift.append(
                    {
                        "what": f"tool {step.tool_ref} (step {step.step_id})",
                        "was": step.manifest_digest,
                        "now": digests[step.tool_ref],
                    }
                )
        return definition, drift

    async def _repin(self, plan: PlanState, playbook: Playbook) -> PlanState:
        """--force: the current definitions, keeping what completed under the old ones."""
        fresh = await self._pin_steps(playbook)
        for step_id in list(fresh):
            old = plan.steps.get(step_id)
            if old is not None and old.done:
                fresh[step_id] = old
        version = await self._vault.registry.version(
            DefinitionKind.PLAYBOOK, playbook.playbook_id, Ref.parse(plan.playbook_ref).selector
        )
        update: dict[str, Any] = {
            "steps": fresh,
            "order": list(fresh),
            "playbook_version": version.version,
            "playbook_digest": version.digest,
        }
        if plan.project_ref is not None:
            pref = Ref.parse(plan.project_ref)
            pversion = await self._vault.registry.version(
                DefinitionKind.PROJECT_CONFIG, pref.id, pref.selector
            )
            update.update(project_version=pversion.version, project_digest=pversion.digest)
        return plan.model_copy(update=update)

    async def _successor(
        self, run: Run, plan: PlanState, state: RunState, run_id: str | None = None
    ) -> tuple[Run, RunState]:
        """A failed or cancelled run is final; its continuation is a new (pending) run that
        carries the completed steps (their artifacts stay the old run's, referenced by id).
        The caller saves its plan before starting it, as `start` does."""
        successor = await self._vault.runs.create(
            project=run.project,
            actor=self._actor,
            purpose=run.purpose,
            playbook=run.playbook.model_dump() if run.playbook else None,
            previous_run_id=run.run_id,
            progress={"steps_total": len(plan.steps), "steps_completed": plan.completed()},
            **({"run_id": run_id} if run_id is not None else {}),
        )
        fresh = RunState(  # the plan goes into data[STATE_KEY] by the Driver
            phase_history=list(state.phase_history),
            phase_artifacts=dict(state.phase_artifacts),
            progress=successor.progress,
        )
        return successor, fresh

    async def _finished(self, run: Run) -> RunResult:
        """A completed run as `start` returns it: its plan as last saved, nothing run."""
        snapshot = await self._vault.snapshots.load(run.run_id)
        plan = PlanState.model_validate(snapshot.state.data.get(STATE_KEY))
        return RunResult(run=run, plan=plan, revision=snapshot.record.revision)

    # -- cancelling ----------------------------------------------------------------------------

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> Run:
        """Mark the run cancelled. An orchestrator driving it notices within
        `CANCEL_POLL_SECONDS`, kills the running steps' process groups and writes its last
        snapshot; everything persisted so far stays."""
        canonical_json({"reason": reason})  # a reason that cannot be audited: refused first
        run = await self._vault.runs.cancel(run_id, actor=self._actor)
        # The run's own id: the one given may differ in case (ids are normalised on the way in).
        await self._audit("orchestrator.cancel_requested", run.run_id, {"reason": reason})
        return run

    async def _audit(self, event: str, run_id: str, details: dict[str, Any]) -> None:
        await audit(self._vault, self._actor, event, run_id, details)

    def _driver(
        self, playbook: Playbook, run_id: str, plan: PlanState, state: RunState, revision: int
    ) -> Driver:
        return Driver(
            self._vault,
            self._executor,
            playbook,
            run_id=run_id,
            plan=plan,
            state=state,
            revision=revision,
            actor=self._actor,
            on_event=self._on_event,
        )

    @staticmethod
    def _definitions(plan: PlanState) -> dict[str, Any]:
        return {
            "playbook": f"{plan.playbook_id}@{plan.playbook_version}",
            "playbook_digest": plan.playbook_digest,
            "project": plan.project_id,
            "project_digest": plan.project_digest,
            "tools": {s.step_id: s.manifest_digest for s in plan.steps.values()},
        }


def _parse_ref(text: str, what: str) -> Ref:
    """A playbook or project reference given by the caller; `ValidationError` if malformed."""
    try:
        return parse_ref(text, operation="orchestrator.start")
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc.message}", **exc.details) from None


def _restart_command(run: Run) -> str:
    """`strongroom run` for a run whose plan was never saved: the playbook version it was
    created for (by digest) and its project config, under the same run id."""
    playbook = run.playbook
    if playbook is None:
        target = "PLAYBOOK"
    elif playbook.version_digest is not None:
        target = f"{playbook.playbook_id}@sha256:{playbook.version_digest}"
    else:
        target = playbook.playbook_id
    words = ["strongroom", "run", target, "--run-id", run.run_id]
    if run.project != PROJECT_FALLBACK:
        words += ["--project", run.project]
    return shlex.join(words)
