"""`strongroom run`, `resume`, `cancel` and `runs show`'s step timeline on the example
data-quality project: the pause for an approval, the JSON event stream, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _keys import registered_key
from _lane import require_sandbox
from strongroom.cli import app
from strongroom.cli._context import exit_code_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner(env={"STRONGROOM_URL": None, "NO_COLOR": "1", "COLUMNS": "200"})

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.root / "vault"), *args])

    def lane(self, *args: str) -> Result:
        return self(
            *args,
            "--tool-path",
            str(EXAMPLES / "tools"),
            "--workdir",
            str(self.root / "project"),
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    require_sandbox()
    shutil.copytree(EXAMPLES / "project", tmp_path / "project")
    cli = Cli(tmp_path)
    files = [
        str(EXAMPLES / "registry" / name)
        for name in (
            "sandbox-readonly.yaml",
            "data-quality-tools.yaml",
            "data-quality-playbook.yaml",
            "data-quality-project.yaml",
        )
    ]
    alice = registered_key(cli, tmp_path, "alice")  # the examples hold an A3 tool
    assert cli("registry", "publish", *files, "--key", alice).exit_code == 0
    digest = json.loads(cli("--json", "registry", "show", "data-quality-tools@1.0.0").stdout)
    approve = cli(
        "registry",
        "approve",
        "--promotion",
        "data-quality-tools@1.0.0",
        "--reason",
        "ok",
        "--key",
        registered_key(cli, tmp_path, admin=alice),
    )
    assert approve.exit_code == 0, (approve.stdout, approve.stderr, digest)
    promote = cli(
        "registry",
        "promote",
        "data-quality-tools",
        "1.0.0",
        "--to",
        "production",
        "--reason",
        "ship",
        "--key",
        str(tmp_path / "bob.pem"),
    )
    assert promote.exit_code == 0, promote.stderr
    return cli


def _events(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_run_pauses_for_approval_then_resume_completes(cli: Cli) -> None:
    paused = cli.lane(
        "run", "data-quality-nightly@2026-01-15.1", "--project", "customer-data-quality"
    )
    assert paused.exit_code == exit_code_for("approval_required"), paused.stdout + paused.stderr
    assert "paused" in paused.stdout
    assert "strongroom registry approve --tool record_run_summary@1.0.0" in paused.stdout
    run_id = paused.stdout.split("strongroom resume ")[1].split()[0]

    shown = json.loads(cli("--json", "runs", "show", run_id).stdout)
    statuses = {step["step_id"]: step["status"] for step in shown["steps"]}
    assert statuses["summarise"] == "waiting_approval"
    assert statuses["export"] == "completed"
    assert shown["run"]["status"] == "paused"

    key = str(cli.root / "bob.pem")
    approve = cli("registry", "approve", "--run", run_id, "--reason", "ok", "--key", key)
    assert approve.exit_code == 0
    resumed = cli.lane("--json", "resume", run_id)
    assert resumed.exit_code == 0, resumed.stdout
    events = _events(resumed)
    assert events[-1]["kind"] == "result"
    assert events[-1]["status"] == "completed"
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_resumed"
    assert kinds.count("step_started") == 1  # only summarise ran again
    assert (cli.root / "project" / "out" / "clean.jsonl").is_file()

    text = cli("runs", "show", run_id)
    assert "steps" in text.stdout
    assert "record_run_summary@1.0.0" in text.stdout
    assert "artifacts" in text.stdout
    again = cli("--json", "resume", run_id)
    assert json.loads(again.stdout)["error"]["code"] == "conflict"
    cancel = cli("--json", "cancel", run_id)
    assert cancel.exit_code == exit_code_for("conflict")


def test_run_a_local_playbook_file_with_inputs(cli: Cli, tmp_path: Path) -> None:
    playbook = tmp_path / "mini.yaml"
    playbook.write_text(
        json.dumps(
            {
                "kind": "playbook",
                "playbook_id": "mini",
                "name": "Mini",
                "version": "0.1.0",
                "steps": [
                    {
                        "step_id": "ingest",
                        "tool": "load_csv@1.2.0",
                        "inputs": {"path": {"from_input": "source"}},
                    }
                ],
            }
        )
    )
    result = cli.lane("--json", "run", str(playbook), "--input", "source=data/in/customers.csv")
    assert result.exit_code == 0, result.stdout
    events = _events(result)
    assert events[-1]["status"] == "completed"
    bad = cli.lane("--json", "run", str(playbook), "--input", "no-equals-sign")
    assert json.loads(bad.stdout)["error"]["code"] == "validation_error"
    missing = cli.lane("--json", "run", str(playbook))
    assert missing.exit_code != 0
    assert _events(missing)[-1]["last_error"]["code"] == "validation_error"
