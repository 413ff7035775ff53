"""Hints are commands: every `strongroom ...` command the demo and the README tour's playbook
run print is pasted into a shell as printed, and must succeed (issue 16, "Hints are commands")."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.cli._context import CEILING_ENV

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# A command starts at `strongroom` (or a path ending in /strongroom) followed by a command
# name, and runs to the end of the line.
_COMMAND = re.compile(r"(?:(?<=\s)|^)((?:\S*/)?strongroom [a-z].*)$")
_WORDS = ("runs", "logs", "audit", "artifacts", "registry", "sandbox", "verify", "resume")


def hints(output: str) -> list[str]:
    found = []
    for line in output.splitlines():
        match = _COMMAND.search(line.strip())
        if match and match.group(1).split()[1] in _WORDS:
            found.append(match.group(1).rstrip())
    return found


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "examples", work / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        COLUMNS="200",
        **{CEILING_ENV: str(tmp_path)},
    )
    return work, env


def test_every_command_the_demo_prints_runs_as_printed(
    workspace: tuple[Path, dict[str, str]],
) -> None:
    work, env = workspace
    demo = shell("strongroom demo", work, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    printed = hints(demo.stdout)
    assert len(printed) >= 8, demo.stdout
    assert any(" artifacts get " in h for h in printed)
    assert any(" registry approvals" in h for h in printed)
    for command in printed:
        pasted = shell(command, work, env)
        assert pasted.returncode == 0, (command, pasted.stdout, pasted.stderr)
        assert "Traceback" not in pasted.stderr


def test_the_hints_of_a_paused_playbook_run_approve_resume_and_show_it(
    workspace: tuple[Path, dict[str, str]],
) -> None:
    work, env = workspace
    assert shell("strongroom demo", work, env).returncode == 0  # keys, registry, a vault
    project = work / "dq"
    shutil.copytree(work / "examples" / "project", project)
    started = shell(
        "strongroom run data-quality-nightly@2026-01-15.1 --project customer-data-quality "
        f"--tool-path examples/tools --workdir {project}",
        work,
        env,
    )
    assert started.returncode == 10, started.stdout + started.stderr  # paused: an approval
    printed = hints(started.stdout)
    approve = [h for h in printed if " registry approve " in h]
    resume = [h for h in printed if h.split()[1] == "resume"]
    show = [h for h in printed if " runs show " in h]
    assert approve, started.stdout
    assert resume, started.stdout
    assert show, started.stdout
    # The approval is given by the demo's reviewer, as the README tour does.
    reviewer = {**env, "STRONGROOM_SIGNING_KEY": str(work / ".strongroom-demo-keys/reviewer.pem")}
    for command in approve:
        pasted = shell(command, work, reviewer)
        assert pasted.returncode == 0, (command, pasted.stdout, pasted.stderr)
    resumed = shell(resume[0], work, env)
    assert resumed.returncode == 0, (resume[0], resumed.stdout, resumed.stderr)
    assert "completed" in resumed.stdout
    for command in [*show, *hints(resumed.stdout)]:
        pasted = shell(command, work, env)
        assert pasted.returncode == 0, (command, pasted.stdout, pasted.stderr)


def test_a_hint_names_the_vault_the_command_was_given(
    workspace: tuple[Path, dict[str, str]],
) -> None:
    work, env = workspace
    missing = work / "not yet"
    none = shell(f"strongroom runs list --vault '{missing}'", work, env)
    assert none.returncode == 3
    (command,) = re.findall(r"`(strongroom init[^`]*)`", none.stderr)
    assert shell(command, work, env).returncode == 0
    assert (missing / "vault.db").is_file()


def test_run_with_an_idempotency_key_resumes_its_run_and_then_runs_nothing(
    workspace: tuple[Path, dict[str, str]],
) -> None:
    work, env = workspace
    assert shell("strongroom demo", work, env).returncode == 0  # keys, registry, a vault
    project = work / "dq"
    shutil.copytree(work / "examples" / "project", project)
    run = (
        "strongroom --json run data-quality-nightly@2026-01-15.1 --project customer-data-quality "
        f"--tool-path examples/tools --workdir {project} --idempotency-key nightly-2026-12-05"
    )

    def result(started: subprocess.CompletedProcess[str]) -> dict[str, object]:
        last = started.stdout.strip().splitlines()[-1]
        document = json.loads(last)
        assert isinstance(document, dict)
        return document

    first = shell(run, work, env)
    assert first.returncode == 10, first.stdout + first.stderr  # paused for an approval
    run_id = result(first)["run_id"]
    again = shell(run, work, env)
    assert again.returncode == 10, again.stdout
    assert result(again)["run_id"] == run_id  # the same run, found by its key
    approve = (
        f'strongroom registry approve --run {run_id} --reason "nightly summary" '
        "--key .strongroom-demo-keys/reviewer.pem"
    )
    assert shell(approve, work, env).returncode == 0
    done = shell(run, work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert result(done) == {**result(done), "run_id": run_id, "status": "completed"}
    shown = json.loads(shell(f"strongroom --json runs show {run_id}", work, env).stdout)
    starts = {step["step_id"]: step["starts"] for step in shown["steps"]}
    finished = shell(run, work, env)
    assert finished.returncode == 0
    assert result(finished)["run_id"] == run_id
    shown = json.loads(shell(f"strongroom --json runs show {run_id}", work, env).stdout)
    assert {step["step_id"]: step["starts"] for step in shown["steps"]} == starts  # nothing ran
    assert "run_started" not in finished.stdout  # no step events: nothing was driven
