"""A Hypothesis fuzzer for the whole command line (issue 16): every command of the Typer app,
found by walking its command tree (a new command is fuzzed without touching this file), with
arguments drawn from hostile values (garbage and unknown ids, 100 KB strings, lone surrogates
and undecodable argv bytes, control characters, big and negative numbers, deep, NaN and
Infinity JSON, ``@file`` references to a FIFO, a socket, a device node, a directory or a missing
file, ``-o`` onto special files and folders with and without a trailing ``/``) mixed with
plausible values and real ids from a seeded vault, so hostile values reach deep code.

Every example must: never exit 70 (an internal error), never print a traceback, exit with a
documented code, print one JSON document under ``--json`` (an error as ``{"error": {code,
message, details}}`` whose exit code matches its code), never block on a FIFO, never replace a
FIFO, socket or device node, never write into a foreign SQLite file or a file that is not SQLite
given as ``--vault``, never create a vault with a command that does not create vaults, and,
when it fails, leave the vault and every file around it exactly as they were.

How it runs: one seeded world per module (a vault with runs, artifacts, logs, keys, actors,
the published examples/registry definitions, an approval and a promotion), copied back before
each example so every example starts from the same state and a failure replays exactly.
Commands run in this process through the root group's ``main`` (what the console script
calls). The slow test runs 2,000 examples; the quick one 100.

``STRONGROOM_FUZZ_SURVEY=findings.jsonl pytest tests/test_cli_fuzz.py -m slow``: record every
finding (one JSON line each) instead of stopping at the first, to list what is left to fix.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from _cli_fuzz import (
    EXAMPLE_FILES,
    EXCLUDED,
    REFUSAL_ONLY,
    SURVEY_ENV,
    CommandSpec,
    FifoGuard,
    Invocation,
    Outcome,
    Problem,
    World,
    command_tree,
    invocations,
    invoke,
    make_special_nodes,
    output_problems,
    signature,
    world_problems,
    write_world_files,
)
from strongroom.cli import app
from strongroom.integrity import init_key

ROOT = typer.main.get_command(app)
SPECS = [spec for spec in command_tree(ROOT) if spec.path not in EXCLUDED]

SLOW_EXAMPLES = 2000
QUICK_EXAMPLES = 100

CLEAN_ENV = (
    "STRONGROOM_URL",
    "STRONGROOM_BLOBS_URL",
    "STRONGROOM_ACTOR",
    "STRONGROOM_DEBUG",
    "STRONGROOM_TOOL_PATH",
    "STRONGROOM_ANCHOR",
    "FORCE_COLOR",
    "AWS_ENDPOINT_URL",
    "STRONGROOM_SERVE_TOKEN",
    "STRONGROOM_BROKER_URL",
)


def _serve_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``serve`` whose arguments are good starts for real (the socket bound, the app built,
    its lifespan started) and stops at once instead of serving until killed: the fuzz judges how
    ``serve`` treats its arguments, and a server left running would hang the example. What it
    froze for the server's lifetime (``gc.freeze``) is unfrozen, as the server's exit would."""
    import uvicorn

    original = uvicorn.Server.run

    def run_briefly(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
        server.should_exit = True
        try:
            original(server, sockets=sockets)
        finally:
            for sock in sockets or []:
                sock.close()
            gc.unfreeze()

    monkeypatch.setattr(uvicorn.Server, "run", run_briefly)


class Fuzz:
    """The seeded world, the FIFO guard and the root command, shared by a module's tests."""

    def __init__(self, world: World, guard: FifoGuard) -> None:
        self.world = world
        self.guard = guard

    def ok(self, *argv: str) -> Any:
        """Run a seeding command that must succeed; its --json document."""
        outcome = invoke(ROOT, ["--json", *argv])
        assert outcome.exit_code == 0, (argv, outcome)
        return json.loads(outcome.stdout)


def _harvest(document: Any, into: dict[str, list[str]]) -> None:
    """Collect ids from a JSON document: every string under a key ending in ``_id``."""
    if isinstance(document, dict):
        for key, value in document.items():
            if isinstance(value, str) and key.endswith("_id"):
                bucket = key.removesuffix("_id")
                if value not in into.setdefault(bucket, []):
                    into[bucket].append(value)
            else:
                _harvest(value, into)
    elif isinstance(document, list):
        for item in document:
            _harvest(item, into)


def _seed(fuzz: Fuzz) -> None:
    world = fuzz.world
    home = world.home
    found: dict[str, list[str]] = {}
    fuzz.ok("init")
    for name in ("alice", "bob", "carol"):
        init_key(home / f"{name}.pem")
    alice, bob = str(home / "alice.pem"), str(home / "bob.pem")
    _harvest(
        fuzz.ok("actors", "add", "alice", "--public-key", alice + ".pub", "--role", "admin"),
        found,
    )
    _harvest(
        fuzz.ok(
            "actors", "add", "bob", "--public-key", bob + ".pub", "--role", "admin", "--key", alice
        ),
        found,
    )
    _harvest(
        fuzz.ok("registry", "publish", *[str(p) for p in EXAMPLE_FILES], "--key", alice), found
    )
    promotion = ["--promotion", "data-quality-tools@1.0.0", "--reason", "reviewed", "--key", bob]
    _harvest(fuzz.ok("registry", "approve", *promotion), found)
    fuzz.ok(
        "registry", "promote", "data-quality-tools", "1.0.0", "--to", "production",
        "--reason", "release", "--key", bob,
    )  # fmt: skip
    _harvest(
        fuzz.ok(
            "registry", "approve", "--tool", "fetch_object_storage@1.0.0", "--reason", "ok",
            "--key", bob, "--expires", "2999-01-01",
        ),
        found,
    )  # fmt: skip
    runs = []
    for purpose in ("seed running", "seed created", "seed completed", "seed failed"):
        created = fuzz.ok("runs", "create", "--project", "demo", "--purpose", purpose)
        runs.append(created["run_id"])
    for run_id in (runs[0], runs[2], runs[3]):
        fuzz.ok("runs", "start", run_id)
    fuzz.ok("runs", "complete", runs[2])
    fuzz.ok("runs", "fail", runs[3], "--code", "E_SEED", "--message", "seeded failure")
    files = world.files
    _harvest(
        fuzz.ok(
            "artifacts", "put", runs[0], str(files / "data.json"), "--role", "custom",
            "--tag", "t1", "--metadata", '{"k": 1}',
        ),
        found,
    )  # fmt: skip
    _harvest(
        fuzz.ok(
            "artifacts", "put", runs[0], str(files / "a.txt"), "--role", "phase_output",
            "--phase", "translate",
        ),
        found,
    )  # fmt: skip
    fuzz.ok(
        "logs", "append", runs[0], "--event", "step", "--message", "hello", "--data", '{"a": 1}'
    )
    fuzz.ok("logs", "append", runs[0], "--event", "done", "--level", "warning", "--message", "bye")
    page = fuzz.ok("runs", "list", "--limit", "1")
    cursors = (
        [v for k, v in page.items() if "cursor" in k and isinstance(v, str)]
        if isinstance(page, dict)
        else []
    )
    fuzz.ok("export", "--to", str(world.root / "seed-bundle"))
    definitions = ["data-quality-tools", "fetch_object_storage", "sandbox-readonly"]
    definitions += ["data-quality-nightly", "data-quality"]
    real = runs[0]
    world.ids = {
        "run": runs,
        "artifact": found.get("artifact", []),
        "approval": found.get("approval", []),
        "key": found.get("key", []),
        "definition": definitions,
        "version": ["1.0.0", "2026-01-15.1", "9.9.9"],
        "reference": [
            "data-quality-tools@production",
            "data-quality-tools@1.0.0",
            "data-quality-tools",
            "sandbox-readonly@draft",
            "data-quality-tools@sha256:" + "0" * 64,
        ],
        "cursor": cursors or ["x"],
        # A real id, nearly: upper case, padded, one digit off.
        "near": [
            real.upper(),
            f" {real}",
            real + "\n",
            real[:-1] + ("0" if real[-1] != "0" else "1"),
        ],
    }
    world.ids["run"] = runs + world.ids["near"]
    for bucket in ("artifact", "approval", "key"):
        assert world.ids[bucket], (bucket, found)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    base = tmp_path_factory.mktemp("fuzz")
    world = World(
        root=base / "a" / "world",
        pristine=base / "pristine",
        nodes=base / "n",
        scratch=base / "scratch",
    )
    world.root.mkdir(parents=True)
    world.cwd.mkdir()
    world.home.mkdir()
    world.scratch.mkdir()
    write_world_files(world)
    sockets = make_special_nodes(world)
    guard = FifoGuard(world.fifos)
    old_cwd = Path.cwd()
    with pytest.MonkeyPatch.context() as env:
        for name in CLEAN_ENV:
            env.delenv(name, raising=False)
        env.setenv("HOME", str(world.home))
        env.setenv("XDG_CONFIG_HOME", str(world.home / ".config"))
        env.setenv("STRONGROOM_SIGNING_KEY", str(world.home / "alice.pem"))
        env.setenv("STRONGROOM_CEILING_DIRECTORIES", str(world.root.parent))
        env.setenv("NO_COLOR", "1")
        env.setenv("COLUMNS", "120")
        _serve_briefly(env)
        os.chdir(world.cwd)
        guard.start()
        try:
            fuzz = Fuzz(world, guard)
            _seed(fuzz)
            world.freeze()
            yield fuzz
        finally:
            guard.stop()
            os.chdir(old_cwd)
            for listener in sockets:
                listener.close()
            shutil.rmtree(base, ignore_errors=True)


def run_example(fuzz: Fuzz, invocation: Invocation) -> list[Problem]:
    """Restore the world, run one generated command, check everything it must not do."""
    world = fuzz.world
    world.restore()
    foreign_before = world.foreign_bytes()
    started = time.perf_counter()
    with fuzz.guard.watch() as blocked:
        outcome: Outcome = invoke(ROOT, invocation.argv, invocation.stdin)
    took = time.perf_counter() - started
    problems = [Problem("fifo_blocked", finding) for finding in blocked]
    problems += output_problems(invocation, outcome)
    problems += world_problems(world, invocation, outcome, foreign_before)
    survey = os.environ.get(SURVEY_ENV)
    if survey:
        with open(survey + ".outcomes", "a", encoding="utf-8", errors="backslashreplace") as out:
            error = " ".join(_error_line(outcome)[:60].split())
            out.write(f"{invocation.spec.label}\t{outcome.exit_code}\t{took:.3f}\t{error}\n")
    if survey and problems:
        with open(survey, "a", encoding="utf-8") as out:
            for problem in problems:
                record = {
                    "signature": signature(invocation, problem),
                    "kind": problem.kind,
                    "detail": problem.detail,
                    "command": invocation.shown(_places(world)),
                    "length": sum(len(a) for a in invocation.argv),
                    "exit": outcome.exit_code,
                    "error": _error_line(outcome),
                }
                out.write(json.dumps(record, ensure_ascii=True) + "\n")
        return []
    if problems:
        report = "\n".join(f"  {p.kind}: {p.detail}" for p in problems)
        command = invocation.shown(_places(world))
        raise _failure(problems[0].kind, invocation.spec)(
            f"{command}\n  exit {outcome.exit_code}: {_error_line(outcome)}\n{report}"
        )
    return problems


def _places(world: World) -> dict[str, str]:
    """How a finding names the test's folders: W is the world (the vault is W/cwd/.strongroom,
    the current folder W/cwd), N the special nodes (N/fifo, N/sock, N/null-device)."""
    return {str(world.root): "W", str(world.nodes): "N"}


def _error_line(outcome: Outcome) -> str:
    from _cli_fuzz import error_line

    return error_line(outcome)[:300]


_FAILURES: dict[tuple[str, str], type[AssertionError]] = {}


def _failure(kind: str, spec: CommandSpec) -> type[AssertionError]:
    """One AssertionError subclass per kind of finding: Hypothesis reports each kind
    separately, each with its own minimal example."""
    key = (kind, "")
    if key not in _FAILURES:
        name = f"CliFuzz_{kind}"
        _FAILURES[key] = type(name, (AssertionError,), {})
    return _FAILURES[key]


def test_every_command_is_fuzzed() -> None:
    """The walk finds the whole tree; exclusions and refusal-only commands name real ones."""
    labels = {spec.path for spec in command_tree(ROOT)}
    assert {("init",), ("runs", "list"), ("artifacts", "get"), ("registry", "publish")} <= labels
    assert set(EXCLUDED) <= labels
    assert set(REFUSAL_ONLY) <= labels
    assert all(reason for reason in (*EXCLUDED.values(), *REFUSAL_ONLY.values()))


FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@given(data=st.data())
@settings(max_examples=QUICK_EXAMPLES, **FUZZ_SETTINGS)
def test_cli_fuzz_quick(fuzz: Fuzz, data: st.DataObject) -> None:
    run_example(fuzz, data.draw(invocations(fuzz.world, SPECS), label="command"))


@pytest.mark.slow
@given(data=st.data())
@settings(max_examples=SLOW_EXAMPLES, **FUZZ_SETTINGS)
def test_cli_fuzz(fuzz: Fuzz, data: st.DataObject) -> None:
    run_example(fuzz, data.draw(invocations(fuzz.world, SPECS), label="command"))
