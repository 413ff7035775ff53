"""`strongroom registry ...` against a real embedded vault: publish the examples, promote,
approve by another actor, show, history, diff, rollback, --json shapes and exit codes."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _keys import registered_key
from strongroom.cli import app
from strongroom.cli._context import EXIT_CODES
from strongroom.testing._registry_service import manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"
FILES = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))  # not in dependency order on purpose


class Cli:
    def __init__(self, vault: Path) -> None:
        self.runner = CliRunner(
            env={
                "STRONGROOM_URL": None,
                "STRONGROOM_ACTOR": None,
                "STRONGROOM_DEBUG": None,
                "COLUMNS": None,
                "NO_COLOR": "1",
            }
        )
        self.vault = vault

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.vault), *args], env=env)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.ok("--json", *args, env=env).stdout)

    def error(self, code: str, *args: str) -> dict[str, Any]:
        result = self("--json", *args)
        document = json.loads(result.stdout)
        assert set(document) == {"error"}, document
        assert document["error"]["code"] == code, document
        assert result.exit_code == exit_code(code)
        return dict(document["error"])


def exit_code(code: str) -> int:
    family = {
        "version_label_taken": "conflict",
        "stale_channel": "conflict",
        "self_approval": "permission_denied",
        "signature_required": "permission_denied",
        "invalid_contract": "validation_error",
        "unknown_reference": "validation_error",
        "dependency_cycle": "validation_error",
    }
    return EXIT_CODES[family.get(code, code)]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a freshly initialised vault (only `init` creates one)."""
    bound = Cli(tmp_path / "vault")
    bound.ok("init")
    return bound


@pytest.fixture
def alice(cli: Cli) -> str:
    """alice's key file: the vault's first admin, who publishes."""
    return registered_key(cli, cli.vault.parent, "alice")


@pytest.fixture
def bob(cli: Cli, alice: str) -> str:
    """bob's key file: an admin alice registered, who reviews and promotes."""
    return registered_key(cli, cli.vault.parent, "bob", admin=alice)


@pytest.fixture
def published(cli: Cli, alice: str) -> list[dict[str, Any]]:
    # The examples include an A3 tool and a sandbox policy: published signed.
    results = cli.json("registry", "publish", *FILES, "--key", alice)
    assert isinstance(results, list)
    return results


def test_publish_orders_files_by_dependency_and_is_idempotent(
    cli: Cli, published: list[dict[str, Any]]
) -> None:
    assert [r["version"]["kind"] for r in published] == [
        "sandbox_policy",
        "tool_manifest",
        "playbook",
        "project_config",
    ]
    assert all(r["created"] for r in published)
    assert published[2]["object_path"] == "playbooks/data-quality-nightly/2026-01-15.1.json"
    again = cli.ok("registry", "publish", *FILES).stdout
    assert again.count("unchanged") == 4
    listing = cli.json("registry", "list")
    assert {item["definition_id"]: item["channels"] for item in listing} == {
        "sandbox-readonly": {"draft": "2026-01-15.1"},
        "data-quality-tools": {"draft": "1.0.0"},
        "data-quality-nightly": {"draft": "2026-01-15.1"},
        "customer-data-quality": {"draft": "1.0.0"},
    }
    assert [i["kind"] for i in cli.json("registry", "list", "--kind", "playbook")] == ["playbook"]
    assert "data-quality-tools" in cli.ok("registry", "list").stdout


def test_promotion_with_another_actors_approval(
    cli: Cli, published: list[Any], alice: str, bob: str
) -> None:
    unsigned = cli.error(
        "signature_required",
        "registry", "promote", "data-quality-tools", "1.0.0", "--to", "production",
        "--reason", "go",
    )  # fmt: skip
    assert "--role operator" in unsigned["message"]
    key = bob
    error = cli.error(
        "approval_required",
        "registry", "promote", "data-quality-tools", "1.0.0", "--to", "production",
        "--reason", "go", "--key", key,
    )  # fmt: skip
    assert error["details"]["channel"] == "production"
    cli.error(
        "self_approval",
        "registry", "approve", "--promotion", "data-quality-tools@1.0.0", "--reason", "mine",
        "--key", alice,
    )  # fmt: skip
    approval = cli.json(
        "registry", "approve", "--promotion", "data-quality-tools@1.0.0", "--reason", "reviewed",
        "--key", key,
    )  # fmt: skip
    assert approval["actor"] == "bob"
    assert approval["target"]["scope"] == "promotion"
    moved = cli.json(
        "registry", "promote", "data-quality-tools", "1.0.0", "--to", "production",
        "--reason", "release", "--key", key,
    )  # fmt: skip
    assert moved["moved"] is True
    assert moved["move"]["approval_id"] == approval["approval_id"]
    shown = cli.json("registry", "show", "data-quality-tools@production")
    assert shown["version"]["version"] == "1.0.0"
    assert shown["channels"] == {"draft": "1.0.0", "production": "1.0.0"}
    assert shown["definition"]["kind"] == "tool_manifest"
    text = cli.ok("registry", "show", "data-quality-tools").stdout
    assert "draft, production" in text
    history = cli.json("registry", "history", "data-quality-tools")
    assert [m["channel"] for m in history["moves"]] == ["draft", "production"]
    assert "production" in cli.ok("registry", "history", "data-quality-tools").stdout
    assert cli.ok("verify").exit_code == 0


def test_tool_and_run_approvals_and_revocation(cli: Cli, published: list[Any], bob: str) -> None:
    tool = cli.json(
        "registry", "approve", "--tool", "fetch_object_storage@1.0.0", "--reason", "ok",
        "--key", bob, "--expires", "2999-01-01",
    )  # fmt: skip
    assert tool["target"] == {
        "scope": "tool_version",
        "tool_id": "fetch_object_storage",
        "version": "1.0.0",
        "digest": None,
    }
    assert tool["expires_at"].startswith("2999-01-01")
    cli.error("not_found", "registry", "approve", "--tool", "nope@1.0.0", "--reason", "x")
    cli.error("validation_error", "registry", "approve", "--reason", "nothing to approve")
    run_id = cli.ok("runs", "create", "--project", "p").stdout.strip()
    unsigned = cli.error(
        "signature_required", "registry", "approve", "--run", run_id, "--reason", "x"
    )
    assert "strongroom keys init" in unsigned["message"]
    run = cli.json("registry", "approve", "--run", run_id, "--reason", "once", "--key", bob)
    assert run["target"]["run_id"] == run_id
    assert run["actor"] == "bob"
    revoked = cli.json("registry", "revoke", tool["approval_id"], "--reason", "no")
    assert revoked["revoked_by"] == f"os:{pwd.getpwuid(os.geteuid()).pw_name}"
    cli.error("conflict", "registry", "revoke", tool["approval_id"], "--reason", "again")
    listed = cli.json("registry", "approvals")
    assert [a["approval_id"] for a in listed] == [tool["approval_id"], run["approval_id"]]
    assert "revoked" in cli.ok("registry", "approvals").stdout


def test_diff_rollback_and_error_codes(
    cli: Cli, published: list[Any], tmp_path: Path, alice: str
) -> None:
    source = (EXAMPLES / "sandbox-readonly.yaml").read_text()
    newer = tmp_path / "policy-2.yaml"
    newer.write_text(
        source.replace("version: 2026-01-15.1", "version: 2026-02-01.1").replace(
            "memory_mb: 512", "memory_mb: 1024"
        )
    )
    cli.ok("registry", "publish", str(newer), "--key", alice)
    diff = cli.ok(
        "registry", "diff", "sandbox-readonly@2026-01-15.1", "sandbox-readonly@2026-02-01.1"
    ).stdout
    assert '-    "memory_mb": 512,' in diff
    assert '+    "memory_mb": 1024,' in diff
    view = cli.json("registry", "diff", "sandbox-readonly@draft", "sandbox-readonly@2026-02-01.1")
    assert view["identical"] is True
    assert view["diff"] == ""
    # draft moved 2026-01-15.1 -> 2026-02-01.1 on publish; roll it back.
    back = cli.json(
        "registry", "rollback", "sandbox-readonly", "--channel", "draft", "--reason", "oops"
    )
    assert back["version"] == "2026-01-15.1"
    assert back["move"]["action"] == "rollback"
    cli.error(
        "conflict",
        "registry",
        "rollback",
        "sandbox-readonly",
        "--channel",
        "draft",
        "--reason",
        "x",
    )
    # same label, other content
    clash = tmp_path / "clash.yaml"
    clash.write_text(source.replace("memory_mb: 512", "memory_mb: 768"))
    cli.error("version_label_taken", "registry", "publish", str(clash))
    # invalid YAML, schema violation with the path, unknown reference
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    cli.error("serialization_error", "registry", "publish", str(broken))
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(source.replace("cpu_cores: 1", "cpu_cores: lots"))
    error = cli.error("validation_error", "registry", "publish", str(invalid))
    assert error["details"]["errors"][0]["path"] == "resources.cpu_cores"
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "kind: playbook\nplaybook_id: p\nname: P\nversion: '1'\n"
        "steps: [{step_id: a, tool: 'ghost@1.0.0'}]\n"
    )
    cli.error("unknown_reference", "registry", "publish", str(unknown))
    cli.error("not_found", "registry", "show", "ghost")
    cli.error("validation_error", "registry", "show", "bad@@ref")
    cli.error("validation_error", "registry", "list", "--kind", "nonsense")
    result = cli("registry", "publish", str(broken))
    assert result.exit_code == exit_code("serialization_error")
    assert result.stderr.startswith("error[serialization_error]:")


def test_actor_cannot_name_who_does_a_governed_act(cli: Cli) -> None:
    """--actor (or $STRONGROOM_ACTOR) would let anyone act as anyone: refused on governed
    commands, saying how to sign instead, and nothing is written."""
    for args in (
        ("registry", "publish", FILES[0], "--actor", "alice"),
        ("registry", "approve", "--run", "r", "--reason", "x", "--actor", "alice"),
        ("registry", "promote", "x", "1", "--to", "staging", "--reason", "r", "--actor", "a"),
        ("registry", "rollback", "x", "--channel", "staging", "--reason", "r", "--actor", "a"),
        ("registry", "revoke", "some-id", "--reason", "r", "--actor", "alice"),
    ):
        error = cli.error("validation_error", *args)
        assert error["details"]["reason"] == "actor_not_accepted"
        assert "--key" in error["message"]
    # $STRONGROOM_ACTOR is not read by governed commands: the OS user publishes (an A0
    # manifest: unsigned is allowed).
    plain = cli.vault.parent / "plain.json"
    plain.write_bytes(manifest())
    result = cli.json("registry", "publish", str(plain), env={"STRONGROOM_ACTOR": "alice"})
    assert result[0]["version"]["publisher"] == f"os:{pwd.getpwuid(os.geteuid()).pw_name}"
