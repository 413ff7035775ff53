"""The command line loads only what a command uses (issue 21): the root knows every command by
name and summary, and a command's module is imported when that command runs. Checked by what
a fresh interpreter has imported, never by a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from strongroom.cli import app
from strongroom.cli.app import COMMANDS, load_command

# What `strongroom --help` must not import: each is tens to hundreds of milliseconds.
HEAVY = ("sqlalchemy", "alembic", "pydantic", "rich", "strongroom.vault", "strongroom.adapters")


def _modules_after(*argv: str, cwd: Path) -> tuple[int, list[str], str]:
    """Run the CLI with ``argv`` in a fresh interpreter; its exit code, the heavy modules it
    imported and what it printed."""
    probe = (
        "import json, sys\n"
        "from strongroom.cli import main\n"
        f"sys.argv = ['strongroom', *{list(argv)!r}]\n"
        "code = 0\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code if isinstance(exc.code, int) else 1\n"
        f"heavy = sorted({{m.split('.')[0] if not m.startswith('strongroom') else m for m in "
        f"sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r})}})\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps([code, heavy]) + '\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    marker = done.stderr.rsplit("MODULES ", 1)
    assert len(marker) == 2, done.stderr
    code, heavy = json.loads(marker[1])
    return code, heavy, done.stdout


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def test_the_root_help_imports_no_command_module_nor_the_vault(tmp_path: Path) -> None:
    code, heavy, out = _modules_after("--help", cwd=tmp_path)
    assert code == 0
    assert heavy == []
    for name, spec in COMMANDS.items():  # every command is listed, with its summary's start
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert spec.summary[:20] in " ".join(line.split())


def test_version_and_a_usage_error_stay_light(tmp_path: Path) -> None:
    code, heavy, _ = _modules_after("--version", cwd=tmp_path)
    assert (code, heavy) == (0, [])
    code, heavy, _ = _modules_after("no-such-command", cwd=tmp_path)
    assert code == 2
    # Typer's own error path imports pydantic (typer._adapters) and may use Rich: not ours.
    assert [m for m in heavy if m not in ("pydantic", "rich")] == []


def test_a_command_loads_its_own_module(tmp_path: Path) -> None:
    code, heavy, out = _modules_after("--vault", "memory://", "runs", "list", cwd=tmp_path)
    assert code == 0, out
    assert "strongroom.vault" in heavy  # it did open the vault: the probe sees real imports
    assert "0 runs match" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_start_of_the_commands_own_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert COMMANDS[name].summary == _first_paragraph(command.help), (
        f"COMMANDS[{name!r}].summary in strongroom/cli/app.py no longer matches the command's "
        "help: copy its first paragraph there"
    )


def test_the_tree_walked_from_the_root_holds_every_command() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    names = list(root.commands)
    assert names == list(COMMANDS)
    assert "runs" in root.commands
    assert "nope" not in root.commands
    assert root.commands.get("nope") is None
    loaded = dict(root.commands.items())  # walking the tree loads every command
    assert set(loaded) == set(COMMANDS)
    runs = loaded["runs"]
    assert isinstance(runs, typer.core.TyperGroup)
    assert {"list", "show", "cancel", "delete"} <= set(runs.commands)
