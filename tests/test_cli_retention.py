"""`strongroom runs delete`, `holds ...` and `gc plan|apply` from the command line: what they
print, their --json shapes, and bad input (a FIFO, a broken plan, a rule without a limit, a
hold without a scope) as one readable error line and a non-zero exit, with nothing changed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from strongroom.cli import app


@pytest.fixture(autouse=True)
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_SIGNING_KEY", str(tmp_path / "no-key.pem"))
    monkeypatch.delenv("STRONGROOM_ANCHOR", raising=False)


def cli(vault: Path, *args: str) -> Result:
    return CliRunner(env={"NO_COLOR": "1"}).invoke(app, ["--vault", str(vault), *args])


def ok_json(vault: Path, *args: str) -> Any:
    result = cli(vault, *args, "--json")
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def ended_run(vault: Path, project: str = "cli") -> str:
    run_id = str(ok_json(vault, "runs", "create", "-p", project)["run_id"])
    assert cli(vault, "runs", "cancel", run_id).exit_code == 0
    return run_id


def audit_head(vault: Path) -> int:
    shown = ok_json(vault, "audit", "show", "-n", "1", "--newest")
    return int(shown["entries"][0]["seq"])


def test_delete_hold_plan_and_apply_round_trip(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    held, loose = ended_run(vault), ended_run(vault)
    hold = ok_json(vault, "holds", "add", held, "--reason", "case 1", "--actor", "lex")
    assert hold["run_id"] == held
    assert hold["actor"] == "lex"
    refused = cli(vault, "runs", "delete", held, "--reason", "r")
    assert refused.exit_code != 0
    assert "error[conflict]" in refused.stderr
    assert "held" in refused.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - project: cli\n    keep_days: 0\n")
    plan_file = tmp_path / "plan.json"
    plan = ok_json(
        vault, "gc", "plan", "--policy", str(policy), "--grace", "0", "--out", str(plan_file)
    )
    assert [i["id"] for i in plan["items"] if i["kind"] == "run"] == [loose]
    assert plan["kept_held"] == 1
    assert json.loads(plan_file.read_text())["plan_id"] == plan["plan_id"]
    result = ok_json(vault, "gc", "apply", str(plan_file))
    assert result["deleted"]["run"] == 1
    again = ok_json(vault, "gc", "apply", str(plan_file))
    assert again["gone"] == 1
    listed = ok_json(vault, "holds", "list")
    assert [h["hold_id"] for h in listed] == [hold["hold_id"]]
    released = cli(vault, "holds", "release", hold["hold_id"], "--reason", "closed")
    assert released.exit_code == 0
    assert "released" in released.stdout
    gone = ok_json(vault, "runs", "delete", held, "--reason", "after the case")
    assert gone["records"]["run"] == 1
    assert gone["reason"] == "after the case"
    assert ok_json(vault, "holds", "list", "--all")[0]["released_by"]
    report = ok_json(vault, "verify", "--no-record")
    assert report["ok"] is True


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    run_id = ended_run(vault)
    head = audit_head(vault)
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.json"
    broken.write_text('{"plan_id": "x", "items": [')
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"plan_id": "x", "actor": "a", "grace_seconds": -1}')
    no_limit = tmp_path / "no-limit.yaml"
    no_limit.write_text("rules:\n  - project: cli\n")
    running_rule = tmp_path / "running.yaml"
    running_rule.write_text("rules:\n  - statuses: [running]\n    keep_days: 1\n")
    cases = [
        (("gc", "apply", str(fifo)), "validation_error"),
        (("gc", "plan", "--out", str(fifo)), "validation_error"),
        (("gc", "apply", str(tmp_path / "missing.json")), "not_found"),
        (("gc", "apply", str(broken)), "serialization_error"),
        (("gc", "apply", str(wrong)), "validation_error"),
        (("gc", "plan", "--policy", str(no_limit)), "validation_error"),
        (("gc", "plan", "--policy", str(running_rule)), "validation_error"),
        # Found by the CLI fuzzer (an OverflowError before).
        (("gc", "plan", "--grace", "99999999999999999999"), "validation_error"),
        (("holds", "add", "--reason", "no scope"), "validation_error"),
        (("holds", "add", run_id, "--project", "cli", "--reason", "both"), "validation_error"),
        (("holds", "add", run_id, "--reason", ""), "validation_error"),
        (("holds", "release", "no-such-hold", "--reason", "r"), "not_found"),
        (("runs", "delete", run_id, "--reason", ""), "validation_error"),
        (("runs", "delete", "not-a-run-id", "--reason", "r"), None),
    ]
    for args, code in cases:
        result = cli(vault, *args)
        assert result.exit_code != 0, args
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines, args
        assert lines[0].startswith("error["), (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        if code is not None:
            assert lines[0].startswith(f"error[{code}]"), (args, result.stderr)
        structured = cli(vault, *args, "--json")
        assert json.loads(structured.stdout)["error"]["code"], args
    assert audit_head(vault) == head  # nothing was written
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # --out never replaced the FIFO
    assert ok_json(vault, "runs", "show", run_id)["run"]["run_id"] == run_id
