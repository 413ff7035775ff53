"""The integrity commands end to end through the CLI: ``keys init/show``, automatic signed
checkpoints, ``audit anchor``, ``verify --anchor/--trusted-key``, ``STRONGROOM_ANCHOR`` and
``audit adopt``, with their refusals (structured errors, nothing changed)."""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from strongroom.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A signing key location of this test's own (never the user's config directory)."""
    key = tmp_path / "keys" / "signing-key.pem"
    monkeypatch.setenv("STRONGROOM_SIGNING_KEY", str(key))
    monkeypatch.delenv("STRONGROOM_ANCHOR", raising=False)
    return key


def cli(vault: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--vault", str(vault), *args])


def populate(vault: Path) -> str:
    created = cli(vault, "runs", "create", "--project", "cli", "--json")
    assert created.exit_code == 0, created.output
    run_id = str(json.loads(created.stdout)["run_id"])
    for n in range(3):
        assert (
            cli(vault, "logs", "append", run_id, "--event", "e", "--message", str(n)).exit_code == 0
        )
    return run_id


def test_keys_init_writes_a_private_key_and_refuses_to_overwrite(env: Path) -> None:
    first = CliRunner().invoke(app, ["keys", "init", "--json"])
    assert first.exit_code == 0, first.output
    info = json.loads(first.stdout)
    assert Path(info["path"]) == env
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert Path(info["public_key_path"]).read_text().strip() == info["public_key_hex"]
    again = CliRunner().invoke(app, ["keys", "init", "--json"])
    assert again.exit_code != 0
    assert json.loads(again.stdout)["error"]["details"]["reason"] == "key_exists"
    assert (
        json.loads(first.stdout)["key_id"]
        == json.loads(CliRunner().invoke(app, ["keys", "show", "--json"]).stdout)["key_id"]
    )


def test_keys_show_without_a_key_is_a_clear_error(env: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "show"])
    assert result.exit_code == 3  # not_found
    assert "Traceback" not in result.output


@pytest.mark.parametrize("given", ["", ".", "..", "newdir/", "a/newdir/"])
def test_keys_init_refuses_a_path_that_is_not_a_file(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """Found by the CLI fuzzer: ``--path=`` crashed (an empty file name) and ``--path=dir/``
    wrote a file named ``dir``."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["keys", "init", "--path", given, "--json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["code"] == "validation_error"
    assert not (tmp_path / "newdir").exists()
    assert not (tmp_path / "a").exists()


def test_anchor_then_verify_passes_and_a_rollback_fails(env: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["keys", "init"]).exit_code == 0
    vault = tmp_path / "vault"
    assert cli(vault, "init").exit_code == 0
    populate(vault)
    witness = tmp_path / "witness.jsonl"
    anchored = cli(vault, "audit", "anchor", "--to", str(witness), "--json")
    assert anchored.exit_code == 0, anchored.output
    head = json.loads(anchored.stdout)["head"]
    public = env.with_name(env.name + ".pub")
    ok = cli(vault, "verify", "--anchor", str(witness), "--trusted-key", str(public), "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["checked"]["anchored_heads"] == 1
    assert report["checked"]["signed_checkpoints"] >= 1

    # Cut the audit log back below the anchored size, as a restored backup would.
    with sqlite3.connect(vault / "vault.db") as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DELETE FROM audit_entries WHERE seq > ?", (head["tree_size"] - 2,))
        conn.execute("DELETE FROM audit_bindings WHERE seq > ?", (head["tree_size"] - 2,))
        conn.execute("DELETE FROM audit_checkpoints")
    bad = cli(vault, "verify", "--anchor", str(witness), "--json")
    assert bad.exit_code == 1
    kinds = {p["kind"] for p in json.loads(bad.stdout)["problems"]}
    assert "audit_anchor" in kinds


def test_a_trusted_key_that_is_not_a_key_is_refused(env: Path, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    assert cli(vault, "init").exit_code == 0
    result = cli(vault, "verify", "--trusted-key", "not-a-key", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["details"]["reason"] == "bad_trusted_key"


def test_strongroom_anchor_appends_every_checkpoint(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = tmp_path / "vault"
    witness = tmp_path / "auto.jsonl"
    monkeypatch.setenv("STRONGROOM_ANCHOR", str(witness))
    refused = cli(vault, "init", "--json")  # no key yet: anchoring cannot sign
    assert refused.exit_code == 2
    assert json.loads(refused.stdout)["error"]["details"]["reason"] == "anchor_needs_key"
    assert CliRunner().invoke(app, ["keys", "init"]).exit_code == 0
    assert cli(vault, "init").exit_code == 0
    populate(vault)
    assert cli(vault, "audit", "anchor", "--to", str(witness)).exit_code == 0
    assert witness.read_text().count("\n") >= 1
    assert cli(vault, "verify", "--anchor", str(witness)).exit_code == 0


def test_audit_adopt_binds_records_written_without_bindings(env: Path, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    assert cli(vault, "init").exit_code == 0
    run_id = populate(vault)
    # A run row inserted behind strongroom's back, as a vault from before bindings has them.
    with sqlite3.connect(vault / "vault.db") as conn:
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        columns = [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
        values = dict(zip(columns, row, strict=True))
        legacy = "01900000-0000-7000-8000-0000000000aa"
        body = {**json.loads(values["body"]), "run_id": legacy}
        values.update(run_id=legacy, body=json.dumps(body))
        conn.execute(
            f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )
    before = cli(vault, "verify", "--json")
    assert before.exit_code == 1
    (problem,) = json.loads(before.stdout)["problems"]
    assert problem["details"]["reason"] == "unbound"
    unconfirmed = cli(vault, "audit", "adopt", "--json")
    assert unconfirmed.exit_code == 2
    adopted = cli(vault, "audit", "adopt", "--yes", "--json")
    assert json.loads(adopted.stdout) == {"adopted": 1}
    assert cli(vault, "verify").exit_code == 0
    shown = json.loads(cli(vault, "audit", "show", "--json", "-n", "10000").stdout)
    (entry,) = [e for e in shown["entries"] if e["event"] == "audit.adopted"]
    assert entry["actor"] == f"os:{pwd.getpwuid(os.geteuid()).pw_name}"  # who ran it
    assert entry["records"][0]["id"] == legacy
    assert os.environ["STRONGROOM_SIGNING_KEY"] == str(env)
