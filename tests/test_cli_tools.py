"""`strongroom tools run` and `strongroom sandbox check` against a real embedded vault and
real sandboxed processes: output, --json shapes, exit codes, degraded isolation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _keys import registered_key
from _lane import APPROVER, TOOLS_DIR, manifest, policy, require_sandbox, tool
from strongroom.cli import app
from strongroom.cli._context import exit_code_for


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner(
            env={"STRONGROOM_URL": None, "STRONGROOM_SANDBOX_DISABLE": None, "NO_COLOR": "1"}
        )

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.root / "vault"), *args], env=env)

    def run_tool(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self(
            "tools",
            "run",
            *args,
            "--tool-path",
            str(TOOLS_DIR),
            "--workdir",
            str(self.root / "work"),
            env=env,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    require_sandbox()
    (tmp_path / "work" / "in").mkdir(parents=True)
    (tmp_path / "work" / "out").mkdir()
    files = []
    for n, definition in enumerate(
        [
            policy(),
            manifest(
                [
                    tool("echo", "lane_tools:echo", level="A0"),
                    tool("guarded_echo", "lane_tools:echo", level="A2"),
                ]
            ),
        ]
    ):
        path = tmp_path / f"def{n}.yaml"
        path.write_text(json.dumps(definition))
        files.append(str(path))
    cli = Cli(tmp_path)
    publisher = registered_key(cli, tmp_path, "alice")  # A2 tools are published signed
    result = cli("registry", "publish", *files, "--key", publisher)
    assert result.exit_code == 0, result.stderr
    return cli


def _json(result: Result) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_run_prints_output_and_layers(cli: Cli) -> None:
    result = cli.run_tool("echo", "--input", '{"text": "hello"}')
    assert result.exit_code == 0, result.stderr
    assert "success" in result.stdout
    assert "landlock_fs" in result.stdout
    assert '"text": "hello"' in result.stdout


def test_run_json_and_input_file(cli: Cli) -> None:
    payload = cli.root / "input.json"
    payload.write_text('{"text": "from a file"}')
    document = _json(cli.run_tool("echo", "--input", f"@{payload}", "--json"))
    assert document["status"] == "success"
    assert document["output"]["text"] == "from a file"
    assert "seccomp" in document["layers"]


def test_bad_input_is_one_line_and_exit_2(cli: Cli) -> None:
    result = cli.run_tool("echo", "--input", "{not json")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "error[validation_error]" in result.stderr
    missing = cli.run_tool("echo", "--input", "@/nonexistent/input.json", "--json")
    assert missing.exit_code == 3
    assert _json(missing)["error"]["code"] == "not_found"


def test_unknown_tool(cli: Cli) -> None:
    result = cli.run_tool("no_such_tool", "--json")
    assert _json(result)["error"]["code"] == "unknown_reference"
    assert result.exit_code == exit_code_for("unknown_reference")


def test_approval_required_then_approved(cli: Cli) -> None:
    refused = cli.run_tool("guarded_echo@1.0.0", "--input", '{"text": "x"}')
    assert refused.exit_code == exit_code_for("approval_required") == 10
    assert "strongroom registry approve --tool guarded_echo@1.0.0" in refused.stderr
    approve = cli(
        "registry",
        "approve",
        "--tool",
        "guarded_echo@1.0.0",
        "--reason",
        "checked",
        "--key",
        registered_key(cli, cli.root, APPROVER, admin=str(cli.root / "alice.pem")),
    )
    assert approve.exit_code == 0, approve.stderr
    allowed = cli.run_tool("guarded_echo@1.0.0", "--input", '{"text": "x"}', "--json")
    assert allowed.exit_code == 0, allowed.stdout
    assert _json(allowed)["status"] == "success"


def test_degraded_isolation_needs_the_flag(cli: Cli) -> None:
    env = {"STRONGROOM_SANDBOX_DISABLE": "seccomp"}
    refused = cli.run_tool("echo", "--json", env=env)
    assert refused.exit_code == exit_code_for("sandbox_unavailable") == 13
    assert _json(refused)["error"]["code"] == "sandbox_unavailable"
    accepted = cli.run_tool("echo", "--json", "--allow-degraded", env=env)
    assert accepted.exit_code == 0, accepted.stdout
    document = _json(accepted)
    assert document["degraded"] is True
    assert "seccomp" not in document["layers"]


def test_sandbox_check(cli: Cli) -> None:
    result = cli("sandbox", "check")
    assert result.exit_code == 0
    assert "landlock_fs" in result.stdout
    document = _json(cli("sandbox", "check", "--json"))
    assert document["layers"]["landlock_fs"] is True
    assert document["layers"]["seccomp"] is True
    assert set(document["layers"]) >= {"cgroup", "write_quota", "netns"}
    if document["euid"] == 0:  # root: a mount namespace and control groups here
        assert document["layers"]["write_quota"] is True
        assert document["layers"]["cgroup"] is True
    quota_off = cli("sandbox", "check", env={"STRONGROOM_SANDBOX_DISABLE": "write_quota,cgroup"})
    assert quota_off.exit_code == 0, quota_off.output
    assert "write_quota" in quota_off.stdout
    disabled = _json(cli("sandbox", "check", "--json", env={"STRONGROOM_SANDBOX_DISABLE": "netns"}))
    assert disabled["disabled"] == ["netns"]
    bad = cli("sandbox", "check", "--json", env={"STRONGROOM_SANDBOX_DISABLE": "nonsense"})
    assert _json(bad)["error"]["code"] == "sandbox_unavailable"
