"""`strongroom actors ...` and signed registry acts from the command line, on a real embedded
vault: register people from their `keys init` public keys, publish and approve with --key,
self-approval refused by key, the signer shown and verified in
`registry approvals`, revocation, and clear one-line errors for bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from _sql_tamper import drop_append_only_guards
from strongroom.cli import app
from strongroom.testing._registry_service import manifest


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.runner = CliRunner(
            env={
                "STRONGROOM_URL": None,
                "STRONGROOM_ACTOR": None,
                "STRONGROOM_SIGNING_KEY": None,
                "COLUMNS": "200",
                "NO_COLOR": "1",
            }
        )
        self.vault = tmp_path / "vault"
        self.tmp = tmp_path
        self.ok("init")  # `actors add` does not create a vault (only init, run, runs create)

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.vault), *args])

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)

    def error(self, *args: str) -> dict[str, Any]:
        result = self("--json", *args)
        document = json.loads(result.stdout)
        assert set(document) == {"error"}, document
        assert result.exit_code != 0
        plain = self(*args)
        assert plain.exit_code == result.exit_code
        assert "Traceback" not in plain.output
        assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
        return dict(document["error"])

    def key(self, name: str) -> tuple[str, str]:
        """A new personal key: (private key path, public key path)."""
        info = self.json("keys", "init", "--path", str(self.tmp / f"{name}.pem"))
        return str(info["path"]), str(info["public_key_path"])


def test_people_sign_and_four_eyes_hold_by_key(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    root, root_pub = cli.key("root")
    alice, alice_pub = cli.key("alice")
    bob, bob_pub = cli.key("bob")
    first = cli.json("actors", "add", "root", "--public-key", root_pub, "--role", "admin")
    assert first["added_by"] is None
    # Everyone after the first admin is registered by an admin's signature.
    assert cli.error("actors", "add", "alice", "--public-key", alice_pub, "--role", "publisher")[
        "code"
    ] == ("permission_denied")
    cli.ok(
        "actors", "add", "alice", "--public-key", alice_pub, "--role", "publisher",
        "--role", "approver", "--key", root,
    )  # fmt: skip
    cli.ok("actors", "add", "bob", "--public-key", bob_pub, "--role", "approver", "--key", root)
    listed = cli.json("actors", "list")
    assert [a["name"] for a in listed] == ["root", "alice", "bob"]

    tool = tmp_path / "tools.json"
    tool.write_bytes(manifest(level="A2"))
    published = cli.json("registry", "publish", str(tool), "--key", alice)
    assert published[0]["version"]["publisher"] == "alice"
    assert published[0]["version"]["signature"]["key_id"] == listed[1]["key_id"]

    # alice's key cannot approve alice's tool.
    refused = cli.error(
        "registry", "approve", "--tool", "echo@1.0.0", "--reason", "ok", "--key", alice,
    )  # fmt: skip
    assert refused["code"] == "self_approval"
    approval = cli.json(
        "registry", "approve", "--tool", "echo@1.0.0", "--reason", "ok", "--key", bob
    )
    assert approval["actor"] == "bob"
    shown = cli.ok("registry", "approvals").stdout
    assert f"bob {listed[2]['key_id']} (verified)" in shown
    history = cli.ok("registry", "history", "m").stdout
    assert f"alice {listed[1]['key_id']} (verified)" in history
    cli.ok("registry", "revoke", approval["approval_id"], "--reason", "redo", "--key", bob)
    assert cli.json("registry", "approvals")[0]["revoke_signature"]["key_id"] == listed[2]["key_id"]
    approval = cli.json(
        "registry", "approve", "--tool", "echo@1.0.0", "--reason", "ok", "--key", bob
    )

    cli.ok("actors", "revoke", listed[2]["key_id"], "--reason", "left", "--key", root)
    gone = cli.error(
        "registry", "approve", "--tool", "echo@1.0.0", "--reason", "again", "--key", bob
    )
    assert gone["code"] == "unknown_signer"
    assert gone["details"]["reason"] == "revoked"
    report = cli.json("verify")
    assert report["problems"] == []
    assert report["checked"]["signed_acts"] == 4  # publication, two approvals, a revocation
    assert report["checked"]["actors"] == 3


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    _, pub = cli.key("root")
    bad_role = cli.error("actors", "add", "root", "--public-key", pub, "--role", "king")
    assert bad_role["details"]["reason"] == "bad_role"
    bad_key = cli.error("actors", "add", "root", "--public-key", "nothex", "--role", "admin")
    assert bad_key["details"]["reason"] == "bad_public_key"
    huge = tmp_path / "huge.pub"
    huge.write_text("a" * 10_000)
    assert (
        cli.error("actors", "add", "root", "--public-key", str(huge), "--role", "admin")["details"][
            "reason"
        ]
        == "bad_public_key"
    )
    not_admin = cli.error("actors", "add", "root", "--public-key", pub, "--role", "approver")
    assert not_admin["details"]["reason"] == "first_actor_not_admin"
    missing = cli.error(
        "registry", "approve", "--run", "x", "--reason", "r", "--key", str(tmp_path / "nope.pem")
    )
    assert missing["code"] in {"not_found", "io_error", "validation_error"}
    unsigned = cli.error("actors", "revoke", "0" * 16, "--reason", "r")
    assert unsigned["details"]["reason"] == "admin_signature_required"


def test_audit_show_and_runs_show_name_the_signer_and_whether_it_verifies(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path)
    root, root_pub = cli.key("root")
    cli.ok("actors", "add", "root", "--public-key", root_pub, "--role", "admin")
    tool = tmp_path / "tools.json"
    tool.write_bytes(manifest(level="A2"))
    cli.ok("registry", "publish", str(tool), "--key", root)
    cli.ok("registry", "promote", "m", "1.0.0", "--to", "staging", "--reason", "try")
    run_id = cli.ok("runs", "create", "--project", "p").stdout.strip()
    approval = cli.json("registry", "approve", "--run", run_id, "--reason", "ok", "--key", root)
    key_id = approval["signature"]["key_id"]

    view = cli.json("audit", "show", "--limit", "1000")
    by_event: dict[str, list[str]] = {}
    for entry in view["entries"]:
        label = view["signers"].get(str(entry["seq"]))
        if label is not None:
            by_event.setdefault(entry["event"], []).append(label)
    assert by_event["actors.added"] == ["first admin (unsigned by design)"]
    assert by_event["registry.published"] == [f"root {key_id} (verified)"]
    assert by_event["registry.promoted"] == ["unsigned"]
    assert by_event["registry.approved"] == [f"root {key_id} (verified)"]
    assert "runs.created" not in by_event  # not a governed act
    text = cli.ok("audit", "show", "--limit", "1000").stdout
    assert "SIGNED" in text
    assert f"root {key_id} (verified)" in text
    shown = cli.json("runs", "show", run_id)
    assert [a["signed"] for a in shown["approvals"]] == [f"root {key_id} (verified)"]
    assert f"signed: root {key_id} (verified)" in cli.ok("runs", "show", run_id).stdout

    # The approval's reason edited behind the service's back: shown as not verified.
    with sqlite3.connect(cli.vault / "vault.db") as db:
        drop_append_only_guards(db)
        db.execute(
            'UPDATE approvals SET body = replace(body, \'"reason":"ok"\', \'"reason":"ko"\')'
        )
    shown = cli.json("runs", "show", run_id)
    assert [a["signed"] for a in shown["approvals"]] == [f"root {key_id} (NOT VERIFIED)"]
    assert shown["approvals"][0]["approval"]["reason"] == "ko"
    view = cli.json("audit", "show", "--limit", "1000")
    assert f"root {key_id} (NOT VERIFIED)" in view["signers"].values()
