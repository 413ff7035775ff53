"""The main job of ``make demo``: the data-quality playbook of ``examples/`` run end to end
on the embedded vault through the orchestrator and the sandboxed execution lane.

ingest (A0) → normalise (A1, a draft for review) → qa (A0, from the production channel) →
report (A0) → export (A1, writes out/clean.jsonl) → summarise (A3: needs an approval). The
run pauses at ``summarise``; a second person approves this run; ``resume`` finishes it.

Two people take part, each with a personal key in a demo-only folder (`demo_people`): the
publisher (the vault's first admin) and the reviewer, whose approvals are signed and shown
verified. The vault's policy wants the production promotion and its approval signed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.demo.examples import examples_dir
from strongroom.errors import PermissionDenied
from strongroom.execution import RunnerOptions
from strongroom.integrity import SigningKey, init_key, load_signing_key
from strongroom.models import ActorRole, Approval, Channel, DefinitionKind, RunStatus
from strongroom.orchestrator import Event, Orchestrator, RunResult
from strongroom.services.identity import signature_problem
from strongroom.vault import Vault

__all__ = ["DemoPeople", "PipelineDemo", "demo_people", "run_main_job"]

PLAYBOOK = "data-quality-nightly@2026-01-15.1"
PROJECT = "customer-data-quality@1.0.0"
TOOLS_MANIFEST = ("data-quality-tools", "1.0.0")
PUBLISHER = "demo"
APPROVER = "reviewer"


@dataclass
class PipelineDemo:
    paused: RunResult
    approve_command: str
    finished: RunResult
    workdir: Path
    events: list[Event] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    export_path: Path | None = None
    approval: Approval | None = None
    approval_verified: bool = False


@dataclass(frozen=True)
class DemoPeople:
    publisher: SigningKey
    reviewer: SigningKey
    folder: Path


async def demo_people(vault: Vault, folder: Path) -> DemoPeople:
    """The demo's two personal keys, kept in ``folder`` (demo-only, never the user's own
    config directory) and registered in the vault: the publisher as its first admin, the
    reviewer as an approver signed in by the publisher."""
    keys: dict[str, SigningKey] = {}
    for name in (PUBLISHER, APPROVER):
        path = folder / f"{name}.pem"
        if not path.exists():
            init_key(path)
        key = load_signing_key(path, required=True)
        assert key is not None
        keys[name] = key
    publisher, reviewer = keys[PUBLISHER], keys[APPROVER]
    registered = {a.key_id for a in await vault.identity.actors()}
    if publisher.key_id not in registered:
        if registered:
            raise PermissionDenied(
                f"this vault already has people registered, but not the demo's keys in "
                f"{folder}: run the demo on a new vault (STRONGROOM_URL) or restore that folder",
                operation="demo",
                reason="demo_keys_unknown",
            )
        await vault.identity.add(
            PUBLISHER, publisher.public_key_hex, [ActorRole.ADMIN, ActorRole.PUBLISHER]
        )
    if reviewer.key_id not in registered:
        await vault.identity.add(
            APPROVER, reviewer.public_key_hex, [ActorRole.APPROVER], signer=publisher
        )
    return DemoPeople(publisher=publisher, reviewer=reviewer, folder=folder)


async def _promote_tools(vault: Vault, people: DemoPeople) -> None:
    """``qa`` asks for ``run_quality_checks@production``: put the manifest there, with the
    promotion approval a second person must give for A2+ definitions."""
    manifest_id, version = TOOLS_MANIFEST
    target = await vault.registry.version(DefinitionKind.TOOL_MANIFEST, manifest_id, version)
    channels = await vault.registry.records.get_channels(DefinitionKind.TOOL_MANIFEST, manifest_id)
    current = channels.get(Channel.PRODUCTION)
    if current is not None and current.to_digest == target.digest:
        return
    await vault.registry.approve(
        {
            "scope": "promotion",
            "kind": DefinitionKind.TOOL_MANIFEST.value,
            "definition_id": manifest_id,
            "digest": target.digest,
            "channel": Channel.PRODUCTION.value,
        },
        actor=APPROVER,
        reason="demo: reviewed the data-quality tools",
        signer=people.reviewer,
    )
    await vault.registry.promote(
        DefinitionKind.TOOL_MANIFEST,
        manifest_id,
        version,
        to=Channel.PRODUCTION,
        reason="demo: ship the data-quality tools",
        signer=people.publisher,  # an admin: every production move is signed
    )


def _fresh_workdir(workdir: Path) -> Path:
    """A copy of examples/project (the CSV in data/in, an empty out/) to run in."""
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(examples_dir() / "project", workdir)
    return workdir.resolve()


async def run_main_job(
    vault: Vault,
    workdir: Path,
    *,
    keys: Path,
    on_event: Callable[[Event], None] | None = None,
) -> PipelineDemo:
    people = await demo_people(vault, keys)
    await _promote_tools(vault, people)
    workdir = _fresh_workdir(workdir)
    events: list[Event] = []

    def record(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    orchestrator = Orchestrator(
        vault,
        RunnerOptions(workdir=workdir, tool_paths=(examples_dir() / "tools",)),
        actor=PUBLISHER,
        on_event=record,
    )
    paused = await orchestrator.start(PLAYBOOK, project=PROJECT)
    run_id = paused.run.run_id
    command = (
        f'strongroom registry approve --run {run_id} --reason "..." '
        f"--key {people.folder / (APPROVER + '.pem')}"
    )
    approval: Approval | None = None
    verified = False
    if paused.status is RunStatus.PAUSED:
        approval = await vault.registry.approve(
            {"scope": "run", "run_id": run_id},
            reason="demo: the nightly summary may be recorded",
            signer=people.reviewer,
        )
        if approval.signature is not None:
            signer = await vault.identity.find(approval.signature.key_id)
            verified = (
                signature_problem(
                    "approve",
                    approval.signed_content(),
                    approval.signature,
                    signer,
                    ActorRole.APPROVER,
                )
                is None
            )
        finished = await orchestrator.resume(run_id)
    else:
        finished = paused
    demo = PipelineDemo(
        paused=paused,
        approve_command=command,
        finished=finished,
        workdir=workdir,
        events=events,
        approval=approval,
        approval_verified=verified,
    )
    report_step = finished.plan.steps.get("report")
    if report_step is not None and report_step.output_artifact_id is not None:
        data = await vault.artifacts.get_bytes(report_step.output_artifact_id)
        demo.report = json.loads(data).get("report", {})
    export = workdir / "out" / "clean.jsonl"
    demo.export_path = export if export.exists() else None
    return demo


def print_main_job(console: Any, demo: PipelineDemo, cli: str) -> None:
    """What the main job did, for a newcomer: the pause, the approval, the result, where
    everything is."""
    from rich.text import Text

    run = demo.finished.run
    console.print()
    console.print(
        Text("The main job: a data-quality playbook through the sandboxed lane", style="bold")
    )
    console.print(
        Text(
            f"  playbook {PLAYBOOK}, project {PROJECT}, working folder {demo.workdir}",
        ),
        soft_wrap=True,
    )
    first = demo.paused
    if first.status is RunStatus.PAUSED:
        done = ", ".join(st.step_id for st in first.plan.ordered() if st.done)
        console.print(
            Text(f"  1. ran {done}; paused: step summarise (A3) needs an approval"),
            soft_wrap=True,
        )
        key_file = demo.approve_command.split()[-1]
        signature = demo.approval.signature if demo.approval is not None else None
        signed = ""
        if signature is not None:
            state = "verified" if demo.approval_verified else "NOT VERIFIED"
            signed = (
                f", signed with {APPROVER}'s key {signature.key_id}: signature {state} "
                f"(key file {key_file})"
            )
        # Past acts are told, not printed as commands: only what can be pasted again is shown
        # as a command (the list below).
        console.print(Text(f"  2. approved by '{APPROVER}'{signed}"), soft_wrap=True)
        console.print(Text(f"     approvals: {cli} registry approvals"), soft_wrap=True)
        console.print(Text("  3. resumed: only the step that waited ran again"), soft_wrap=True)
    status = Text(f"  run {run.run_id}: ")
    status.append(
        run.status.value, style="bold green" if run.status is RunStatus.COMPLETED else "bold red"
    )
    console.print(status)
    for step in demo.finished.plan.ordered():
        step_id = step.step_id
        duration = step.duration_seconds()
        review = "  (draft: needs review)" if step.needs_review else ""
        console.print(
            Text(
                f"     {step_id:<10} {step.status.value:<10} {step.tool_id}@{step.tool_version}"
                f"  {duration or 0:.2f} s  starts={step.starts}{review}"
            ),
            soft_wrap=True,
        )
    if demo.report:
        console.print(
            Text(
                f"  QA: {demo.report.get('failure_count')} failures in "
                f"{demo.report.get('row_count')} rows, by rule {demo.report.get('by_rule')}"
            ),
            soft_wrap=True,
        )
    if demo.export_path is not None:
        console.print(Text(f"  export: {demo.export_path}"), soft_wrap=True)
    console.print(Text("  look at it:", style="bold"))
    for command in (
        f"{cli} runs show {run.run_id}",
        f"{cli} logs show {run.run_id}",
        f"{cli} audit show -n 20",
        f"{cli} sandbox check",
    ):
        console.print(Text(f"    {command}"), soft_wrap=True)
    console.print(Text("  or in your browser (read-only):", style="bold"))
    console.print(
        Text(f"    {cli} serve   # then open http://127.0.0.1:8765/runs/{run.run_id}"),
        soft_wrap=True,
    )
