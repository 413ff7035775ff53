"""The governed execution lane: run one tool, once, under its policy, and say what happened.

    runner = ToolRunner(vault, RunnerOptions(workdir=Path("project")))
    response = await runner.run({"request_id": new_id(), "tool_id": "load_csv",
                                 "tool_version": "1.2.0", "input": {"path": "data/in/a.csv"}})

`ToolRunner.run` resolves the tool and its sandbox policy from the registry, applies the
governance level (A2/A3 need an approval), validates the input against the tool's request
schema, plans the sandbox against what this host can enforce (refusing with
``sandbox_unavailable`` unless degraded isolation is accepted, which is audited), launches
the confined process, retries retryable failures with backoff, validates the output, stores
output (and, for A3, input) payloads as artifacts, writes the captured stdout/stderr
(redacted) as the run's log lines, and audits a ``start`` and an ``end`` record per attempt.
Refusals return a failure response and are audited too; only a request that names nothing
(an unknown tool or run) raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom._fs import remove_tree
from strongroom.errors import (
    Conflict,
    SandboxUnavailable,
    StrongroomError,
    ValidationError,
)
from strongroom.execution._attempt import bootstrap_plan, end_details, start_proxy
from strongroom.execution.governance import Governance, check_governance
from strongroom.execution.host_services import (
    HostServices,
    grants_host_services,
)
from strongroom.execution.outcome import (
    Outcome,
    account_connects,
    account_writes,
    classify,
    refused_connects,
)
from strongroom.execution.payloads import (
    encode_payload,
    schema_problem,
    store_payloads,
    tool_log_lines,
)
from strongroom.execution.tool_paths import check_tool_paths, import_path_for
from strongroom.models import (
    ArtifactRole,
    DefinitionKind,
    DefinitionVersion,
    RunnerRequest,
    RunnerResponse,
    RunnerStatus,
    RunStatus,
    SandboxPolicy,
    ToolDefinition,
    utcnow,
)
from strongroom.models.registry import NetworkMode, Ref
from strongroom.retry import Backoff
from strongroom.sandbox.host import disabled_layers, probe_host
from strongroom.sandbox.launch import LaunchResult, launch
from strongroom.sandbox.plan import SandboxLimits, SandboxPlan, plan_sandbox
from strongroom.services import parse

if TYPE_CHECKING:
    from strongroom.sandbox.proxy import EgressProxy
    from strongroom.secrets import Redactor
    from strongroom.vault import Vault

__all__ = ["BUILTIN_POLICY", "RunnerOptions", "ToolRunner"]

#: The policy of a tool that names none: nothing readable but the runtime, nothing writable
#: but its scratch folder, no network, 512 MiB.
BUILTIN_POLICY = SandboxPolicy.model_validate(
    {
        "sandbox_id": "builtin-deny-all",
        "name": "Built-in: no files, no network",
        "version": "1",
        "owner": "strongroom",
        "filesystem": {"mode": "deny-all"},
        "network": {"mode": "deny-all"},
        "resources": {"cpu_cores": 1, "memory_mb": 512, "timeout_seconds": 3600},
    }
)
BUILTIN_POLICY_DIGEST = hashlib.sha256(BUILTIN_POLICY.model_dump_json().encode()).hexdigest()

TOOLS_PROJECT = "tools"


@dataclass(frozen=True)
class RunnerOptions:
    """How this runner launches tools. ``workdir`` is where relative policy paths point and
    the tool's working directory; ``tool_paths`` are folders put on the tool's ``sys.path``
    (readable in the sandbox); ``disabled_layers`` switches layers off (None: from
    ``STRONGROOM_SANDBOX_DISABLE``); ``python`` is the interpreter tools run in."""

    workdir: Path = field(default_factory=Path.cwd)
    tool_paths: tuple[Path, ...] = ()
    allow_degraded: bool = False
    disabled_layers: frozenset[str] | None = None
    python: str = sys.executable
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    output_limit: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        # Relative paths mean the caller's current directory, as the CLI's --workdir and
        # --tool-path do: the tool runs in `workdir`, where they would point elsewhere.
        object.__setattr__(self, "workdir", Path(self.workdir).resolve())
        object.__setattr__(self, "tool_paths", tuple(Path(p).resolve() for p in self.tool_paths))


@dataclass
class _Invocation:
    """Everything resolved about one request before anything runs."""

    request: RunnerRequest
    manifest: DefinitionVersion
    tool: ToolDefinition
    policy: SandboxPolicy
    policy_ref: str
    policy_digest: str
    governance: Governance
    run_id: str
    ad_hoc_run: bool
    input_payload: bytes
    input_sha256: str
    started_at: Any = field(default_factory=utcnow)
    cancel: threading.Event | None = None
    step: str | None = None
    output_role: ArtifactRole = ArtifactRole.PHASE_OUTPUT
    store_output: bool = True
    import_path: list[str] = field(default_factory=list)  # tool paths the sandbox may import

    def response(self, **fields: Any) -> RunnerResponse:
        """The response to this request, finished now, with ``fields`` on top."""
        return parse(
            RunnerResponse,
            {
                "request_id": self.request.request_id,
                "run_id": self.run_id,
                "tool_id": self.tool.tool_id,
                "tool_version": self.tool.version,
                "started_at": self.started_at,
                "finished_at": utcnow(),
                "trace": self.request.trace,
                "requested_at": self.request.requested_at,
                "external_run_id": self.request.external_run_id,
                "caller": self.request.caller,
                "governance": self.request.governance,
                "timeout_seconds": self.request.timeout_seconds,
                **fields,
            },
            operation="runner.run",
        )

    def subject(self) -> dict[str, Any]:
        return {
            "request_id": self.request.request_id,
            "run_id": self.run_id,
            "tool_id": self.tool.tool_id,
            "tool_version": self.tool.version,
            "manifest_id": self.manifest.definition_id,
            "manifest_version": self.manifest.version,
            "tool_digest": self.manifest.digest,
            "policy": self.policy_ref,
            "policy_digest": self.policy_digest,
            "governance": self.governance.level.value,
            "caller": self.request.caller,
            "input_sha256": self.input_sha256,
            **self.requested(),
        }

    def requested(self) -> dict[str, Any]:
        """What the request asked for beyond the tool and its input (recorded as given)."""
        req = self.request
        asked: dict[str, Any] = {"requested_at": req.requested_at.isoformat()}
        if req.external_run_id is not None:
            asked["external_run_id"] = req.external_run_id
        if req.timeout_seconds is not None:
            asked["timeout_seconds"] = req.timeout_seconds
        if req.governance is not None:
            asked["requested_governance"] = req.governance.model_dump(
                mode="json", exclude_none=True
            )
        if req.trace is not None:
            asked["trace"] = req.trace.model_dump(mode="json")
        return asked


class ToolRunner:
    def __init__(self, vault: Vault, options: RunnerOptions | None = None) -> None:
        self._vault = vault
        self.options = options or RunnerOptions()

    @property
    def vault(self) -> Vault:
        """The vault this runner resolves tools in and records to."""
        return self._vault

    # -- the public call ----------------------------------------------------------------------

    async def run(
        self,
        request: RunnerRequest | dict[str, Any],
        *,
        allow_degraded: bool | None = None,
        cancel: threading.Event | None = None,
        step: str | None = None,
        output_role: ArtifactRole = ArtifactRole.PHASE_OUTPUT,
        store_output: bool = True,
    ) -> RunnerResponse:
        """Run the request's tool once (plus retries). ``cancel`` set from another task or
        thread kills the running attempt (error code ``cancelled``). ``step``,
        ``output_role`` and ``store_output`` describe the output artifact (the orchestrator
        sets them from the playbook step's persistence policy)."""
        req = (
            request
            if isinstance(request, RunnerRequest)
            else parse(RunnerRequest, request, operation="runner.run")
        )
        degraded_ok = self.options.allow_degraded if allow_degraded is None else allow_degraded
        inv = await self._resolve(req)
        inv.cancel, inv.step = cancel, step
        inv.output_role, inv.store_output = ArtifactRole(output_role), store_output
        try:
            return await self._govern_and_run(inv, degraded_ok)
        except StrongroomError as exc:
            return await self._refuse(inv, exc.code, exc.message, exc.details)
        except Exception as exc:  # a fault of the runner or the host, not of the tool
            return await self._fail_internal(inv, exc)

    # -- resolution ---------------------------------------------------------------------------

    async def _resolve(self, req: RunnerRequest) -> _Invocation:
        ref = req.tool_id if req.tool_version is None else f"{req.tool_id}@{req.tool_version}"
        manifest, tool = await self._vault.registry.resolve_tool(ref)
        policy, policy_ref, policy_digest = await self._policy(tool)
        payload = encode_payload(req.input)  # before any run exists: nothing to close on error
        ad_hoc = req.run_id is None
        if req.run_id is not None:
            await self._vault.runs.get(req.run_id)  # NotFound for an unknown run
            run_id = req.run_id
        else:
            run = await self._vault.runs.create(
                project=TOOLS_PROJECT,
                actor=req.caller,
                purpose=f"tools run {tool.tool_id}@{tool.version}",
                trace=req.trace.w3c() if req.trace is not None else None,
            )
            await self._vault.runs.start(run.run_id)
            run_id = run.run_id
        return _Invocation(
            request=req,
            manifest=manifest,
            tool=tool,
            policy=policy,
            policy_ref=policy_ref,
            policy_digest=policy_digest,
            governance=Governance.of(tool, req.governance),
            run_id=run_id,
            ad_hoc_run=ad_hoc,
            input_payload=payload,
            input_sha256=hashlib.sha256(payload).hexdigest(),
        )

    async def _policy(self, tool: ToolDefinition) -> tuple[SandboxPolicy, str, str]:
        refs = list(tool.policy_refs)
        if not refs:
            return BUILTIN_POLICY, "builtin-deny-all@1", BUILTIN_POLICY_DIGEST
        if len(refs) > 1:
            raise ValidationError(
                f"tool {tool.tool_id} names {len(refs)} sandbox policies; the runner enforces "
                "exactly one (merge them into one policy)",
                operation="runner.policy",
                policy_refs=[str(r) for r in refs],
            )
        ref: Ref = refs[0]
        version, definition = await self._vault.registry.get(
            DefinitionKind.SANDBOX_POLICY, ref.id, ref.selector
        )
        assert isinstance(definition, SandboxPolicy)
        return definition, f"{ref.id}@{version.version}", version.digest

    # -- governance, sandbox plan, attempts ---------------------------------------------------

    async def _govern_and_run(self, inv: _Invocation, degraded_ok: bool) -> RunnerResponse:
        if inv.tool.entrypoint is None:
            raise _not_bound(inv)
        await check_governance(self._vault, inv.governance, inv.tool, inv.manifest, inv.run_id)
        problem = schema_problem(inv.tool.contract.request_schema, inv.request.input, "input")
        if problem is not None:
            raise problem
        caps = probe_host(self.options.python)
        disabled = (
            self.options.disabled_layers
            if self.options.disabled_layers is not None
            else disabled_layers()
        )
        timeout = float(
            min(
                inv.tool.constraints.timeout_seconds,
                inv.policy.resources.timeout_seconds,
                inv.request.timeout_seconds or 86_400,
            )
        )
        backoff = Backoff(
            attempts=1 + inv.tool.constraints.max_retries,
            base=self.options.backoff_seconds,
            cap=self.options.max_backoff_seconds,
            jitter="none",
        )
        inv.import_path = import_path_for(inv.tool.entrypoint, self.options.tool_paths)
        await asyncio.to_thread(check_tool_paths, [Path(p) for p in inv.import_path])
        outcome = Outcome(ok=False, code="handler_exception")
        last_plan: SandboxPlan | None = None
        last_result: LaunchResult | None = None
        for attempt in range(1, backoff.attempts + 1):
            # A fresh folder holding the tool's scratch folder: the write quota's tmpfs is
            # mounted on it (in the tool's mount namespace only).
            staging = Path(tempfile.mkdtemp(prefix="strongroom-sandbox-"))
            scratch = staging / "scratch"
            proxy: EgressProxy | None = None
            try:
                scratch.mkdir(mode=0o700)
                if inv.policy.network.mode is NetworkMode.ALLOWLIST:
                    proxy = start_proxy(inv)
                plan = plan_sandbox(
                    inv.policy,
                    caps,
                    level=inv.governance.level,
                    workdir=self.options.workdir,
                    scratch=scratch,
                    tool_paths=self.options.tool_paths,
                    protected=self._vault.local_paths(),
                    timeout_seconds=timeout,
                    proxy_port=proxy.port if proxy else None,
                    disabled=disabled,
                    limits=self.options.limits,
                    staging=staging,
                )
                if attempt == 1:
                    await self._check_isolation(inv, plan, degraded_ok)
                last_plan = plan
                outcome, last_result = await self._attempt(inv, plan, scratch, attempt, proxy)
            finally:
                if proxy is not None:
                    await asyncio.to_thread(proxy.close)
                await asyncio.to_thread(remove_tree, staging)
            if outcome.ok or not outcome.retryable or attempt == backoff.attempts:
                break
            if inv.cancel is not None and inv.cancel.is_set():
                break
            await asyncio.sleep(backoff.delay(attempt))
        return await self._finish(inv, outcome, attempt, last_plan, last_result)

    async def _check_isolation(
        self, inv: _Invocation, plan: SandboxPlan, degraded_ok: bool
    ) -> None:
        if not plan.missing:
            return
        if not degraded_ok:
            raise SandboxUnavailable(
                f"this host cannot enforce what policy {inv.policy_ref} needs: "
                f"{', '.join(plan.missing)} (pass --allow-degraded to run with less isolation; "
                "that is audited)",
                operation="runner.sandbox",
                missing_layers=plan.missing,
                enforced_layers=plan.enforced,
            )
        await self._audit("execution.degraded_accepted", inv, {"missing_layers": plan.missing})

    async def _attempt(
        self,
        inv: _Invocation,
        plan: SandboxPlan,
        scratch: Path,
        attempt: int,
        proxy: EgressProxy | None,
    ) -> tuple[Outcome, LaunchResult]:
        """One launch of the tool under ``plan``, audited from ``execution.start`` to
        ``execution.end`` (its log lines kept, redacted): what it came to, and what the
        launch reported (``confined`` then also lists the layers that held)."""
        host = self._host_services(inv)
        await self._audit(
            "execution.start",
            inv,
            {"attempt": attempt, "sandbox": plan.describe(), "degraded": bool(plan.missing)},
        )
        drop = plan.layers.get("drop_uid")
        result = await asyncio.to_thread(
            launch,
            bootstrap_plan(inv, plan, self.options.workdir),
            python=self.options.python,
            env=plan.env,
            timeout=plan.timeout_seconds,
            host=host,
            output_limit=self.options.output_limit,
            message_limit=inv.policy.resources.max_response_mb * 1024 * 1024,
            sandbox_uid=int(drop["uid"]) if drop else None,
            cancel=inv.cancel,
            connections=proxy.adopt if proxy is not None else None,
        )
        outcome, denied = _judge(inv, plan, result, proxy)
        # The vault's patterns (``Vault(redact_patterns=...)``) plus the policy's own.
        redactor = self._vault.redactor.extended(inv.policy.logging.redact_patterns)
        if outcome.traceback:
            outcome.details["traceback"] = redactor.text(outcome.traceback)
        outcome.message = redactor.text(outcome.message)
        dropped_lines = await self._keep_tool_log(inv, result, redactor, attempt)
        enforced = _enforced_layers(plan, result)
        await self._audit(
            "execution.end",
            inv,
            end_details(
                attempt,
                outcome,
                plan,
                result,
                enforced=enforced,
                denied=denied,
                dropped_lines=dropped_lines,
            ),
        )
        outcome.details.setdefault("attempt", attempt)
        if host is not None:
            outcome.details["host_artifacts"] = host.artifact_ids
        result.confined = {"enforced": enforced, **(result.confined or {})}
        return outcome, result

    def _host_services(self, inv: _Invocation) -> HostServices | None:
        """The host services the tool may call during the attempt (None: its manifest grants
        it none)."""
        if not grants_host_services(inv.tool):
            return None
        return HostServices(
            self._vault,
            asyncio.get_running_loop(),
            run_id=inv.run_id,
            tool_id=inv.tool.tool_id,
            request_id=inv.request.request_id,
            actor=inv.request.caller,
        )

    async def _keep_tool_log(
        self, inv: _Invocation, result: LaunchResult, redactor: Redactor, attempt: int
    ) -> int:
        """How many of the tool's output lines (redacted) the run's log could not take: all
        of them when the run ended meanwhile, else none."""
        lines = tool_log_lines(result, redactor, inv.tool.tool_id, inv.request.request_id, attempt)
        if lines:
            try:
                await self._vault.logs.append_many(inv.run_id, lines)
            except Conflict:  # the run ended meanwhile (cancelled): its log is sealed
                return len(lines)
        return 0

    # -- endings --------------------------------------------------------------------------------

    async def _finish(
        self,
        inv: _Invocation,
        outcome: Outcome,
        attempts: int,
        plan: SandboxPlan | None,
        result: LaunchResult | None,
    ) -> RunnerResponse:
        artifact_ids: list[str] = []
        output_sha256: str | None = None
        if outcome.ok:
            assert outcome.payload is not None
            artifact_ids, output_sha256 = await store_payloads(self._vault, inv, outcome.payload)
            if inv.governance.needs_review:
                await self._audit("execution.review_required", inv, {"artifact_ids": artifact_ids})
        # What the tool asked the host to store first; the output artifact stays the last id.
        artifact_ids = list(outcome.details.pop("host_artifacts", []) or []) + artifact_ids
        enforced = list((result.confined or {}).get("enforced", [])) if result else []
        response = inv.response(
            status=RunnerStatus.SUCCESS if outcome.ok else RunnerStatus.FAILURE,
            output=outcome.output if outcome.ok else None,
            error=None if outcome.ok else outcome.error(),
            needs_review=inv.governance.needs_review and outcome.ok,
            attempts=attempts,
            artifact_ids=artifact_ids,
            output_sha256=output_sha256,
            layers=enforced,
            degraded=bool(plan and plan.missing),
            usage=result.usage() if result else {},
        )
        await self._close_ad_hoc_run(inv, response)
        return response

    async def _refuse(
        self, inv: _Invocation, code: str, message: str, details: dict[str, Any]
    ) -> RunnerResponse:
        await self._audit("execution.refused", inv, {"error_code": code, "reason": message})
        response = inv.response(
            status=RunnerStatus.FAILURE,
            error={"code": code, "message": message, "details": details},
        )
        await self._close_ad_hoc_run(inv, response)
        return response

    async def _fail_internal(self, inv: _Invocation, exc: Exception) -> RunnerResponse:
        """Whatever failed inside the runner, the invocation ends on record: an
        ``execution.end`` (status failure, ``internal_error``) and its ad-hoc run failed."""
        reason = self._vault.redactor.text(f"{type(exc).__name__}: {exc}")[:1000]  # redact first
        await self._audit(
            "execution.end",
            inv,
            {"status": "failure", "error_code": "internal_error", "reason": reason},
        )
        response = inv.response(
            status=RunnerStatus.FAILURE,
            error={
                "code": "internal_error",
                "message": f"the runner failed: {reason}",
                "details": {"exception": type(exc).__name__},
            },
        )
        await self._close_ad_hoc_run(inv, response)
        return response

    async def _close_ad_hoc_run(self, inv: _Invocation, response: RunnerResponse) -> None:
        if not inv.ad_hoc_run:
            return
        run = await self._vault.runs.get(inv.run_id)
        if run.status is not RunStatus.RUNNING:
            return
        if response.ok:
            await self._vault.runs.complete(inv.run_id)
        else:
            assert response.error is not None
            await self._vault.runs.fail(inv.run_id, response.error)

    async def _audit(self, event: str, inv: _Invocation, details: dict[str, Any]) -> None:
        await self._vault.audit.record(
            {
                "event": event,
                "actor": inv.request.caller,
                "subject_type": "tool_invocation",
                "subject_id": inv.request.request_id,
                "details": {**inv.subject(), **details},
            }
        )


def _not_bound(inv: _Invocation) -> ValidationError:
    """The refusal of a tool published without an entrypoint, saying how to bind it."""
    tool, manifest = inv.tool, inv.manifest
    command = (
        f"strongroom registry bind {shlex.quote(f'{tool.tool_id}@{tool.version}')} "
        "--entrypoint package.module:function"
    )
    return ValidationError(
        f"tool {tool.tool_id}@{tool.version} (manifest {manifest.definition_id} "
        f"{manifest.version}) has no entrypoint: it is published but not runnable until bound; "
        f"bind it with: {command}",
        operation="runner.resolve",
        reason="tool_not_bound",
        tool_id=tool.tool_id,
        tool_version=tool.version,
        manifest_id=manifest.definition_id,
        manifest_version=manifest.version,
        command=command,
    )


def _judge(
    inv: _Invocation, plan: SandboxPlan, result: LaunchResult, proxy: EgressProxy | None
) -> tuple[Outcome, list[dict[str, Any]]]:
    """What the attempt came to (its output checked against the tool's response schema, its
    writes and connects accounted, its payload encoded), and the connections refused to it:
    with any, a tool that crashed broke the sandbox."""
    rlimits = plan.layers.get("rlimits") or {}
    outcome = classify(result, timeout=plan.timeout_seconds, memory_bytes=rlimits.get("as"))
    if outcome.ok:
        problem = schema_problem(inv.tool.contract.response_schema, outcome.output, "output")
        if problem is not None:
            outcome = Outcome(
                ok=False, code=problem.code, message=problem.message, details=problem.details
            )
    quota = plan.layers.get("write_quota") or {}
    outcome = account_writes(outcome, result.writes, staged=bool(quota.get("write_paths")))
    seccomp = (result.confined or {}).get("seccomp") or {}
    watched = isinstance(seccomp, dict) and seccomp.get("connect_watch") is True
    outcome = account_connects(outcome, result.connects, watched=watched)
    outcome.payload = encode_payload(outcome.output) if outcome.ok else None
    denied = [e.to_dict() for e in proxy.events() if not e.allowed] if proxy else []
    denied += refused_connects(result.connects)
    if denied and not outcome.ok and outcome.code == "handler_exception":
        outcome.code = "sandbox_violation"
        outcome.details = {**outcome.details, "denied_connections": denied}
    return outcome, denied


def _enforced_layers(plan: SandboxPlan, result: LaunchResult) -> list[str]:
    """The layers that held for this attempt: the plan's, minus what the child reported it
    could not apply (Landlock's TCP rules need ABI 4; its scoping ABI 6)."""
    enforced = list(plan.enforced)
    landlock = (result.confined or {}).get("landlock")
    if isinstance(landlock, dict):
        if not landlock.get("net") and "landlock_net" in enforced:
            enforced.remove("landlock_net")
        if not landlock.get("scoped") and "landlock_scope" in enforced:
            enforced.remove("landlock_scope")
    if "cgroup" in enforced and not result.cgroup:
        enforced.remove("cgroup")
    if result.confined is None:  # the child never confirmed its confinement
        enforced = [layer for layer in enforced if layer in ("session", "timeout", "env_scrub")]
    return enforced
