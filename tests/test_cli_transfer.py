"""`strongroom export` / `strongroom import`: JSON and text output, the error convention, and
an export SIGKILLed halfway (in a real subprocess running the CLI) that a re-run completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from strongroom.cli import app
from strongroom.cli._context import EXIT_CODES, EXIT_PROBLEMS
from strongroom.testing.transfer import MIB, populate_vault, snapshot_vault
from strongroom.vault import Vault

RUNNER = CliRunner(
    env={
        "STRONGROOM_URL": None,
        "STRONGROOM_BLOBS_URL": None,
        "STRONGROOM_DEBUG": None,
        "FORCE_COLOR": None,
        "COLUMNS": None,
        "NO_COLOR": "1",
    }
)


def cli(*args: str) -> Result:
    return RUNNER.invoke(app, list(args))


def cli_json(*args: str, exit_code: int = 0) -> Any:
    result = cli("--json", *args)
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def snapshot(url: Path) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        async with await Vault.open(url, create=False) as vault:
            return await snapshot_vault(vault)

    return asyncio.run(take())


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """An embedded vault with a bit of everything (a 3 MiB artifact among them)."""
    url = tmp_path / "source"

    async def build() -> None:
        async with await Vault.open(url, checkpoint_interval=4) as vault:
            await populate_vault(vault, big_bytes=3 * MIB + 1)

    asyncio.run(build())
    return url


def test_export_to_a_bundle_and_import_it_back(source: Path, tmp_path: Path) -> None:
    before = snapshot(source)
    bundle = tmp_path / "bundle"
    out = cli_json("--vault", str(source), "export", "--to", f"bundle:{bundle}")
    assert out["ok"] is True
    assert out["source"]["kind"] == "vault"
    assert out["target"] == {"kind": "bundle", "path": str(bundle)}
    assert out["records"] == {kind: len(items) for kind, items in before["records"].items()}
    assert out["blobs"]["copied"] == len(before["blobs"])
    assert out["blobs"]["skipped"] == 0
    assert out["blobs"]["bytes"] > 3 * MIB
    assert out["verify"]["problems"] == []
    assert (bundle / "manifest.json").is_file()

    copy = tmp_path / "copy"
    # A plain path holding a bundle is recognised as one.
    out = cli_json("--vault", str(copy), "import", "--from", str(bundle))
    assert out["ok"] is True
    assert out["source"]["kind"] == "bundle"
    assert sum(out["records_skipped"].values()) == 0
    assert out["verify"]["checked"]["audit_checkpoints"] == len(before["records"]["checkpoints"])
    assert snapshot(copy) == before
    assert cli("--vault", str(copy), "verify").exit_code == 0

    again = cli_json("--vault", str(copy), "import", "--from", f"bundle:{bundle}")
    assert sum(again["records"].values()) == 0
    assert again["blobs"]["copied"] == 0


def test_export_to_another_vault_prints_a_summary(source: Path, tmp_path: Path) -> None:
    result = cli("--vault", str(source), "export", "--to", str(tmp_path / "copy"))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    text = result.stdout
    assert "Exported vault" in text
    assert "(sqlite + local)" in text
    assert "blobs    " in text
    assert "target intact" in text
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    assert snapshot(tmp_path / "copy") == snapshot(source)


def test_no_verify(source: Path, tmp_path: Path) -> None:
    out = cli_json(
        "--vault", str(source), "export", "--to", f"bundle:{tmp_path / 'b'}", "--no-verify"
    )
    assert out["verify"] is None
    assert out["ok"] is True


def test_errors_follow_the_cli_convention(source: Path, tmp_path: Path) -> None:
    missing = cli("--json", "--vault", str(tmp_path / "t"), "import", "--from", "bundle:/nope")
    assert missing.exit_code == EXIT_CODES["not_found"]
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"

    text = cli("--vault", str(tmp_path / "t"), "import", "--from", "bundle:/nope")
    assert text.exit_code == EXIT_CODES["not_found"]
    assert text.stderr.startswith("error[not_found]: ")
    assert text.stderr.count("\n") == 1

    same = cli("--json", "--vault", str(source), "export", "--to", str(source))
    assert same.exit_code == EXIT_CODES["validation_error"]

    no_source = cli("--vault", str(tmp_path / "absent"), "export", "--to", "bundle:x")
    assert no_source.exit_code == EXIT_CODES["not_found"]
    assert not (tmp_path / "absent").exists()

    # A vault that was initialised on its own is not an empty target.
    initialised = tmp_path / "initialised"
    assert cli("--vault", str(initialised), "init").exit_code == 0
    conflict = cli("--json", "--vault", str(source), "export", "--to", str(initialised))
    assert conflict.exit_code == EXIT_CODES["conflict"]
    error = json.loads(conflict.stdout)["error"]
    assert error["code"] == "conflict"
    assert "strongroom init" in error["message"]

    usage = cli("--json", "--vault", str(source), "export")
    assert usage.exit_code == 2
    assert json.loads(usage.stdout)["error"]["code"] == "usage_error"


def test_a_damaged_source_blob_exits_1_after_copying_the_rest(source: Path, tmp_path: Path) -> None:
    victim = max(
        (p for p in (source / "blobs" / "sha256").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    out = cli_json(
        "--vault",
        str(source),
        "export",
        "--to",
        f"bundle:{tmp_path / 'b'}",
        exit_code=EXIT_PROBLEMS,
    )
    assert out["ok"] is False
    assert [(p["code"], p["subject"]) for p in out["problems"]] == [
        ("integrity_error", victim.name)
    ]
    assert {p["code"] for p in out["verify"]["problems"]} == {"not_found"}


# -- SIGKILL halfway ------------------------------------------------------------------------------

# Runs the real CLI (`strongroom --vault SRC export --to TARGET`) with the transfer's progress
# callback wrapped so that the process SIGKILLs itself at a chosen point: in the middle of
# streaming the multi-MiB blob, or right after the first batch of log entries was written.
_KILLER = r"""
import os, signal, sys
import strongroom.cli.transfer as cli_transfer

source, target, where = sys.argv[1:4]
real = cli_transfer.transfer

async def killing(src, dst, *, progress, verify):
    def wrapped(stage, done, total):
        progress(stage, done, total)
        if (where == "mid-blob" and stage == "blob_bytes" and done >= 1024 * 1024) or (
            where == "mid-records" and stage == "log_entries"
        ):
            os.kill(os.getpid(), signal.SIGKILL)
    return await real(src, dst, progress=wrapped, verify=verify)

cli_transfer.transfer = killing
from strongroom.cli import app
app(["--vault", source, "export", "--to", target])
"""


def run_killed(source: Path, target: str, where: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(source), target, where],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


@pytest.mark.parametrize(
    ("target_kind", "where"),
    [
        ("bundle", "mid-blob"),
        ("bundle", "mid-records"),
        ("vault", "mid-blob"),
        ("vault", "mid-records"),
    ],
)
def test_an_export_killed_halfway_completes_when_run_again(
    source: Path, tmp_path: Path, target_kind: str, where: str
) -> None:
    before = snapshot(source)
    path = tmp_path / "target"
    target = f"bundle:{path}" if target_kind == "bundle" else str(path)
    run_killed(source, target, where)
    big = max(before["blobs"], key=lambda d: before["blobs"][d]["size_bytes"])
    published = (path / "blobs" / "sha256" / big[:2] / big[2:4] / big).exists()
    assert published == (where == "mid-records")  # killed while streaming it, or after
    if target_kind == "bundle":
        assert not (path / "manifest.json").exists()
        incomplete = cli("--json", "--vault", str(tmp_path / "x"), "import", "--from", str(path))
        assert incomplete.exit_code == EXIT_CODES["not_found"]
        assert json.loads(incomplete.stdout)["error"]["details"]["reason"] == "incomplete_bundle"

    out = cli_json("--vault", str(source), "export", "--to", target)
    assert out["ok"] is True
    for kind, items in before["records"].items():
        assert out["records"][kind] + out["records_skipped"][kind] == len(items)
        assert out["records_updated"][kind] == 0
    assert out["blobs"]["copied"] + out["blobs"]["skipped"] == len(before["blobs"])
    if where == "mid-records":
        assert out["blobs"]["copied"] == 0  # every blob had made it before the kill
        if target_kind == "vault":
            assert out["records_skipped"]["runs"] == len(before["records"]["runs"])

    if target_kind == "bundle":
        assert sorted(os.listdir(path)) == ["blobs", "manifest.json", "records"]
        assert os.listdir(path / "blobs") == ["sha256"]  # no temp file left by the kill
        copy = tmp_path / "copy"
        assert cli_json("--vault", str(copy), "import", "--from", str(path))["ok"] is True
        assert snapshot(copy) == before
    else:
        assert snapshot(path) == before
