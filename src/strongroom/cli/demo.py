"""``strongroom demo`` (what ``make demo`` runs): run `strongroom.demo.run_demo` on the vault
of ``--vault`` (default ``./.strongroom``) and print what it did: the summary of the sample
translation run (what was stored, the verify verdict, the CLI commands that inspect it), the
published registry examples and the main job's report
(`strongroom.demo.pipeline.print_main_job`). `cli_command` says how to call the CLI from the
current folder.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from strongroom.cli._context import cli_state, reported_errors
from strongroom.cli._output import iso, plain_table, print_table, stdout_console
from strongroom.demo import DEMO_KEYS, DEMO_WORKDIR, run_demo
from strongroom.demo.pipeline import print_main_job
from strongroom.demo.translation import DemoResult
from strongroom.models import RunStatus
from strongroom.secrets import safe_url
from strongroom.services.registry import PublishResult
from strongroom.vault import DEFAULT_VAULT_URL

__all__ = ["cli_command", "demo", "print_registry", "print_summary"]


def demo(ctx: typer.Context) -> None:
    """Record a sample document-translation run, publish the example registry definitions,
    run the main job through the governed lane, verify the vault and say what was stored.

    The main job works in ./.strongroom-demo ($STRONGROOM_DEMO_WORKDIR) and signs with the
    demo people's keys in ./.strongroom-demo-keys ($STRONGROOM_DEMO_KEYS). Running it again
    records another run in the same vault. Exit 0: everything verified and the job completed.
    """
    state = cli_state(ctx)
    url = state.vault_url
    workdir = Path(os.environ.get("STRONGROOM_DEMO_WORKDIR", DEMO_WORKDIR))
    keys = Path(os.environ.get("STRONGROOM_DEMO_KEYS", DEMO_KEYS))
    with reported_errors(state):
        result, published, job = asyncio.run(
            run_demo(url, workdir, keys, blobs_url=state.blobs_url)
        )
    # Shown and put into the hints without its password (the user has it; a screen need not).
    safe = safe_url(url)
    shown = str(Path(url).absolute()) if "://" not in url else safe
    console = stdout_console()
    print_summary(console, result, safe, shown)
    cli = cli_command() + (f" --vault {shlex.quote(safe)}" if url != DEFAULT_VAULT_URL else "")
    print_registry(console, published, cli)
    if job is not None:
        print_main_job(console, job, cli)
    completed = job is None or job.finished.status is RunStatus.COMPLETED
    raise typer.Exit(0 if result.report.ok and completed else 1)


def cli_command() -> str:
    """How to call the CLI from here: the venv's script, relative when it is below the cwd."""
    script = Path(sys.executable).parent / "strongroom"
    if not script.exists():
        return "strongroom"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def print_summary(console: Console, result: DemoResult, url: str, shown_url: str) -> None:
    run = result.run
    heading = Text("strongroom demo", style="bold")
    heading.append(": recorded a document-translation run", style="")
    console.print(heading)
    console.print(Text(f"  vault   {shown_url}"))
    line = Text(f"  run     {run.run_id}  ")
    line.append(f"{run.status.value}", style="bold green")
    if run.outcome is not None:
        line.append(f" ({run.outcome.value})")
    line.append(f"  project {run.project}  created {iso(run.created_at)}")
    console.print(line, soft_wrap=True)
    console.print()

    phases = plain_table("PHASE", "LOG LINES", "ARTIFACTS", "SNAPSHOT REVISION", title="Phases")
    for phase in result.phases:
        phases.add_row(
            phase.name,
            str(phase.log_lines),
            ", ".join(a.name or a.artifact_id for a in phase.artifacts) or "-",
            str(phase.revision),
        )
    print_table(console, phases)
    console.print()

    artifacts = plain_table(
        "ARTIFACT ID", "NAME", "ROLE", "PHASE", "BYTES", "SHA256", title="Artifacts"
    )
    for item in result.artifacts:
        artifacts.add_row(
            item.artifact_id,
            item.name or "-",
            item.role.value,
            item.phase or "-",
            Text(str(item.size_bytes), justify="right"),
            item.checksum,
        )
    print_table(console, artifacts)
    console.print()

    snaps = ", ".join(f"r{s.revision} ({s.size_bytes} B)" for s in result.snapshots)
    console.print(Text(f"State snapshots: {snaps}"), soft_wrap=True)
    console.print(
        Text(
            f"Log: {result.log_entries} hash-chained lines, sealed into an artifact when the "
            "run completed."
        ),
        soft_wrap=True,
    )
    secret = Text("Redaction: the fake API key was removed before storage; stored message: ")
    secret.append(repr(result.redacted_example), style="yellow")
    console.print(secret, soft_wrap=True)
    checked = result.report.checked
    verdict = Text("Verify: ")
    if result.report.ok:
        verdict.append("intact", style="bold green")
    else:
        verdict.append(f"{len(result.report.problems)} problem(s)", style="bold red")
    verdict.append(
        f" ({checked.get('blobs', 0)} blobs re-hashed, {checked.get('log_entries', 0)} log "
        f"entries and {checked.get('audit_entries', 0)} audit entries replayed)"
    )
    console.print(verdict, soft_wrap=True)
    for problem in result.report.problems:
        console.print(
            Text(f"  {problem.code} {problem.kind} {problem.subject}: {problem.message}"),
            soft_wrap=True,
        )
    console.print(Text(f"Runs in this vault: {result.runs_in_vault}"))
    console.print()

    cli = cli_command()
    if url != DEFAULT_VAULT_URL:
        # The variable may have been set for the demo only: name the vault explicitly.
        cli += f" --vault {shlex.quote(url)}"
    first = next(
        a for a in result.artifacts if a.format.value == "jsonl" and a.role.value != "logs"
    )
    console.print(Text("Inspect it with the CLI:", style="bold"))
    for command in (
        f"{cli} runs show {run.run_id}",
        f"{cli} artifacts list {run.run_id}",
        f"{cli} logs show {run.run_id}",
        f"{cli} verify",
        f"{cli} artifacts get {first.artifact_id} -o out.jsonl",
    ):
        console.print(Text(f"  {command}"), soft_wrap=True)


def print_registry(console: Console, published: list[tuple[str, PublishResult]], cli: str) -> None:
    if not published:
        return
    console.print()
    console.print(Text("Registry: example definitions (examples/registry/)", style="bold"))
    for name, result in published:
        version = result.version
        state = "published" if result.created else "already published"
        console.print(
            Text(
                f"  {state:<17} {version.kind.value:<14} {version.definition_id}@{version.version}"
                f"  sha256:{version.digest[:12]}…  ({name})"
            ),
            soft_wrap=True,
        )
    console.print(Text(f"  list them: {cli} registry list", style=""), soft_wrap=True)
