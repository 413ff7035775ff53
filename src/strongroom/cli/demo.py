"""The printed part of ``make demo``: the summary of the sample translation run (what was
stored, the verify verdict, the CLI commands that inspect it) and the list of published
registry examples, plus `cli_command`, how to call the CLI from the current folder. The main
job's report is printed by `strongroom.demo_pipeline.print_main_job`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from strongroom.cli._output import iso, plain_table, print_table
from strongroom.demo_translation import DemoResult
from strongroom.services.registry import PublishResult
from strongroom.vault import DEFAULT_VAULT_URL

__all__ = ["cli_command", "print_registry", "print_summary"]


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
        f"{cli} artifacts list --run {run.run_id}",
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
