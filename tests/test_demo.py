"""`strongroom demo` (what `make demo` runs) records a complete, verifiable sample run,
and can run again against the same vault."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from strongroom.cli import app
from strongroom.demo.translation import FAKE_API_KEY, PHASES, record_demo_run
from strongroom.errors import SignatureRequired
from strongroom.models import ArtifactFormat, ArtifactRole, RunStatus
from strongroom.testing.keys import approver
from strongroom.vault import Vault

RUN_LINE = re.compile(r"^\s*run\s+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s")


def run_demo(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("STRONGROOM_URL", "FORCE_COLOR")}
    done = subprocess.run(
        [sys.executable, "-m", "strongroom", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [m.group(1) for line in done.stdout.splitlines() if (m := RUN_LINE.match(line))]
    assert len(ids) == 1, done.stdout
    assert f"runs show {ids[0]}" in done.stdout
    assert "Verify: intact" in done.stdout
    assert FAKE_API_KEY not in done.stdout
    # The reviewer's approval is signed with a demo-only key and verifies.
    assert re.search(r"signed with reviewer's key [0-9a-f]{16}: signature verified", done.stdout)
    assert (cwd / ".strongroom-demo-keys" / "reviewer.pem").stat().st_mode & 0o077 == 0
    return ids[0]


def test_demo_runs_twice_in_one_vault_and_the_cli_finds_its_runs(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    second = run_demo(tmp_path)
    assert first != second

    runner = CliRunner(env={"STRONGROOM_URL": str(tmp_path / ".strongroom"), "NO_COLOR": "1"})

    def cli_json(*args: str) -> dict[str, object]:
        result = runner.invoke(app, ["--json", *args])
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert isinstance(document, dict)
        return document

    listed = cli_json("runs", "list", "--project", "demo-docs")
    assert listed["total"] == 2
    for run_id in (first, second):
        shown = cli_json("runs", "show", run_id)
        run = shown["run"]
        assert isinstance(run, dict)
        assert run["status"] == "completed"
        assert run["current_phase"] == "export"
        assert shown["snapshot_count"] == len(PHASES)
        assert shown["artifact_count"] == 5  # 4 phase outputs + the sealed log

    logs = runner.invoke(app, ["logs", "show", second])
    assert logs.exit_code == 0
    assert "[REDACTED]" in logs.stdout
    assert FAKE_API_KEY not in logs.stdout
    assert runner.invoke(app, ["verify"]).exit_code == 0


async def test_record_demo_run_stores_every_kind_of_record() -> None:
    async with await Vault.open("memory://") as vault:
        result = await record_demo_run(vault)
        assert result.run.status is RunStatus.COMPLETED
        assert [p.name for p in result.phases] == list(PHASES)
        assert [s.revision for s in result.snapshots] == [1, 2, 3, 4]
        formats = {a.format for a in result.artifacts if a.role is not ArtifactRole.LOGS}
        assert formats == {
            ArtifactFormat.JSONL,
            ArtifactFormat.JSON,
            ArtifactFormat.CSV,
            ArtifactFormat.BINARY,
        }
        assert result.report.ok, result.report.problems
        assert "[REDACTED]" in result.redacted_example
        assert FAKE_API_KEY not in result.redacted_example

        latest = await vault.snapshots.load(result.run.run_id)
        assert latest.state.phase_revisions == {p: i for i, p in enumerate(PHASES, start=1)}
        assert set(latest.state.phase_artifacts) == set(PHASES)
        assert latest.state.progress.steps_completed == len(PHASES)
        assert [e.status for e in latest.state.phase_history] == ["started", "completed"] * 4
        levels = {e.level.value for e in await vault.logs.read(result.run.run_id)}
        assert {"debug", "info", "warning"} <= levels


async def test_the_demo_publishes_the_example_definitions_once() -> None:
    from strongroom.demo.registry import EXAMPLE_FILES, publish_examples

    vault = await Vault.open("memory://")
    try:
        key = await approver(vault, "demo")
        with pytest.raises(SignatureRequired):  # the examples govern A3 execution
            await publish_examples(vault)
        first = await publish_examples(vault, signer=key)
        assert [name for name, _ in first] == list(EXAMPLE_FILES)
        assert all(result.created for _, result in first)
        again = await publish_examples(vault, signer=key)
        assert [r.version.digest for _, r in again] == [r.version.digest for _, r in first]
        assert not any(result.created for _, result in again)
        assert len(await vault.registry.list()) == len(EXAMPLE_FILES)
    finally:
        await vault.close()


@pytest.mark.postgres
def test_the_demo_never_shows_the_vaults_password(pg_url: str, tmp_path: Path) -> None:
    """The summary and the command hints name the vault as `safe_url` shows it (the server
    here trusts the connection, so any password opens it)."""
    secret = "hunter2-Zq9"
    url = make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k not in ("STRONGROOM_URL", "FORCE_COLOR")}
    done = subprocess.run(
        [sys.executable, "-m", "strongroom", "--vault", url, "--blobs", "blobs", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert secret not in done.stdout + done.stderr
    assert "Verify: intact" in done.stdout
    assert "--vault 'postgresql://postgres:[REDACTED]@" in done.stdout
