"""Docs that cannot drift: every shell and Python block of README.md and docs/*.md runs as a
reader would run it, and must succeed.

Each Markdown file is one **session**, like a reader's terminal: a fresh folder holding a copy
of the checkout's ``examples/`` (and, for a file that needs them, its Makefile and venv for
``make demo``, its ``benchmarks/``), a fresh ``$HOME`` and
``$TMPDIR``, the venv's ``bin`` first on ``PATH`` (so ``strongroom`` and ``python`` are this
checkout's), no ``STRONGROOM_*`` or ``AWS_*`` variable from the developer's environment. The
blocks of a file run in order in that session: each in its own ``bash`` process, started in
the folder the previous block ended in, with the variables it left (exported or not).

- ``bash``/``sh`` blocks: every command must succeed (a failing command is reported with its
  line, as ``set -e`` would stop there; write ``|| ...`` where the docs show a failure).
- ``console`` blocks: the ``$ `` lines are the commands; each must exit 0, except one whose
  shown output starts with ``error[CODE]``: it must fail with that code. Output is not compared.
- ``python`` blocks run as scripts (``python block.py``) in the session.
- Markers (HTML comments right before the fence, see tests/_doc_blocks.py):
  ``<!-- illustration: REASON -->`` (not run, counted and printed), ``<!-- file: NAME -->``
  (saved as NAME for a later block), ``<!-- needs: postgres s3 jq ... -->`` (skipped with a
  message when missing, a failure under ``CI=true``; ``postgres`` is the test server of
  tests/_pg_fixtures.py, ``s3`` moto's server, which the docs start themselves).

A failure names the block (``docs/cli.md:120``), the failing line and the session's output.
Run one block with ``-k 'cli.md:120'``: the blocks before it in its file run first. The
files' sessions run side by side (a thread each, up to the number of CPUs), since each
``strongroom`` command costs about a second of interpreter start-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from _doc_blocks import Block, blocks, doc_files
from _pg_fixtures import require_postgres

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BLOCK_TIMEOUT = 600.0
OUTPUT_SHOWN = 8000

ALL_BLOCKS = [block for path in doc_files(ROOT) for block in blocks(path, ROOT)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.runnable and b.illustration is None]
ILLUSTRATIONS = [b for b in ALL_BLOCKS if b.runnable and b.illustration is not None]

# Bash's own variables, never carried from one block to the next.
_BASH_VARIABLES = frozenset(
    """BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0 BASH_CMDS BASH_COMMAND
    BASH_EXECUTION_STRING BASH_LINENO BASH_LOADABLES_PATH BASH_REMATCH BASH_SOURCE BASH_SUBSHELL
    BASH_VERSINFO BASH_VERSION COLUMNS COMP_WORDBREAKS DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID
    FUNCNAME GROUPS HISTCMD HISTFILE HISTFILESIZE HISTSIZE HOSTNAME HOSTTYPE IFS LINENO LINES
    MACHTYPE MAILCHECK OLDPWD OPTARG OPTERR OPTIND OSTYPE PIPESTATUS PPID PS1 PS2 PS4 PWD RANDOM
    SECONDS SHELLOPTS SHLVL SRANDOM UID _""".split()  # noqa: SIM905
)

_PROLOGUE = """\
__sr_state={state}
__sr_save() {{
  local __sr_rc=$?
  trap - ERR
  pwd > "$__sr_state/cwd"
  env -0 > "$__sr_state/env"
  local __sr_v __sr_d
  for __sr_v in $(compgen -v); do
    case " {specials} " in *" $__sr_v "*) continue ;; esac
    case $__sr_v in __sr_*) continue ;; esac
    __sr_d=$(declare -p "$__sr_v" 2>/dev/null) || continue
    case ${{__sr_d#declare -}} in *x*\\ *) continue ;; esac
    printf '%s\\n' "$__sr_d"
  done > "$__sr_state/vars.sh"
  exit "$__sr_rc"
}}
__sr_fail() {{ printf '%s\\n' "$*" >> "$__sr_state/failures"; }}
cd -- {cwd} || exit 97
if [ -f "$__sr_state/vars.sh" ]; then source "$__sr_state/vars.sh"; fi
: > "$__sr_state/failures"
trap __sr_save EXIT
"""

_CONSOLE_CHECK = """\
__sr_check() {{
  local rc=$1
  if [ -z "$3" ] && [ "$rc" -ne 0 ]; then __sr_fail "line $2: exit status $rc"; fi
  if [ -n "$3" ] && [ "$rc" -eq 0 ]; then
    __sr_fail "line $2: exit status 0, the docs show error[$3]"
  fi
  return "$rc"
}}
"""


def _quote(text: str | Path) -> str:
    return "'" + str(text).replace("'", "'\\''") + "'"


@dataclass
class Outcome:
    returncode: int
    failures: list[str]
    output: str


class Session:
    """One Markdown file's terminal: its folder, environment and the state blocks leave."""

    def __init__(self, root: Path, doc: str) -> None:
        self.doc = doc
        self.root = root
        self.work = root / "work"
        self.state = root / "state"
        self.scripts = root / "scripts"
        self.logs = root / "logs"
        for folder in (self.work, self.state, self.scripts, self.logs, root / "home", root / "tmp"):
            folder.mkdir(parents=True)
        shutil.copytree(
            ROOT / "examples", self.work / "examples", ignore=shutil.ignore_patterns("__pycache__")
        )
        texts = "".join(block.text for block in RUN_BLOCKS if block.doc == doc)
        if "make " in texts or ".venv/" in texts:
            self._checkout_files()
        if "benchmarks.run" in texts:
            shutil.copytree(
                ROOT / "benchmarks",
                self.work / "benchmarks",
                ignore=shutil.ignore_patterns("__pycache__", "bench-results"),
            )
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.upper().startswith(("STRONGROOM_", "AWS_", "PYTEST_", "XDG_"))
            and name not in {"COLUMNS", "LINES", "VIRTUAL_ENV", "OLDPWD"}
        }
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["HOME"] = str(root / "home")
        env["TMPDIR"] = str(root / "tmp")
        # A reader's checkout has no vault above it: never find one above the session.
        env["STRONGROOM_CEILING_DIRECTORIES"] = str(root)
        # The docs' local services listen on loopback: never send that through a proxy.
        for name in ("NO_PROXY", "no_proxy"):
            current = env.get(name)
            env[name] = f"{current},127.0.0.1,localhost" if current else "127.0.0.1,localhost"
        self.env = env
        self.cwd = self.work
        self.groups: list[int] = []

    def _checkout_files(self) -> None:
        """The top of a checkout a reader stands in: the Makefile and the venv it made, so
        ``make demo`` runs ``.venv/bin/strongroom demo`` (never a reinstall: the copied
        pyproject.toml is dated before the venv's install stamp)."""
        stamp = VENV / ".installed-dev"
        if not stamp.is_file():
            return
        shutil.copy(ROOT / "Makefile", self.work / "Makefile")
        shutil.copy(ROOT / "pyproject.toml", self.work / "pyproject.toml")
        older = stamp.stat().st_mtime - 60
        os.utime(self.work / "pyproject.toml", (older, older))
        (self.work / ".venv").symlink_to(VENV, target_is_directory=True)

    def _script(self, block: Block) -> str:
        head = _PROLOGUE.format(
            state=_quote(self.state),
            cwd=_quote(self.cwd),
            specials=" ".join(sorted(_BASH_VARIABLES)),
        )
        source = self.scripts / f"{block.line}.{'py' if block.lang == 'python' else 'sh'}"
        if block.lang == "python":
            source.write_text(block.text, encoding="utf-8")
            body = f"python {_quote(source)}\n"
            return head + "trap '__sr_fail \"python block: exit status $?\"' ERR\n" + body
        if block.lang == "console":
            lines = [_CONSOLE_CHECK.format()]
            for command in block.console_commands():
                lines.append(command.text)
                lines.append(f"__sr_check $? {command.line} {command.error_code or ''!s}")
            lines.append("true  # the checks above judged each command")
            source.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return head + f"source {_quote(source)}\n"
        offset = block.line
        source.write_text(block.text, encoding="utf-8")
        trap = f"trap '__sr_fail \"line $(({offset} + LINENO)): exit status $?\"' ERR\n"
        return head + trap + f"source {_quote(source)}\n"

    def run(self, block: Block) -> Outcome:
        if block.file_name is not None:
            (self.cwd / block.file_name).write_text(block.text, encoding="utf-8")
            return Outcome(0, [], f"saved as {self.cwd / block.file_name}\n")
        wrapper = self.scripts / f"{block.line}.wrapper.sh"
        wrapper.write_text(self._script(block), encoding="utf-8")
        log = self.logs / f"{block.line}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", str(wrapper)],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.groups.append(process.pid)
            try:
                returncode = process.wait(timeout=BLOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait()
                returncode = -1
        output = log.read_text(encoding="utf-8", errors="replace")
        failures_file = self.state / "failures"
        failures = failures_file.read_text().splitlines() if failures_file.is_file() else []
        if returncode == -1:
            failures.append(f"did not finish within {BLOCK_TIMEOUT:.0f} s")
        elif returncode != 0 and not failures:
            failures.append(f"exit status {returncode}")
        if block.lang == "console":
            for command in block.console_commands():
                if command.error_code and f"error[{command.error_code}]" not in output:
                    failures.append(f"line {command.line}: no error[{command.error_code}] printed")
        self._load_state()
        return Outcome(returncode, failures, output)

    def _load_state(self) -> None:
        cwd = self.state / "cwd"
        if cwd.is_file() and Path(cwd.read_text().strip()).is_dir():
            self.cwd = Path(cwd.read_text().strip())
        env_file = self.state / "env"
        if env_file.is_file():
            env: dict[str, str] = {}
            for item in env_file.read_bytes().split(b"\0"):
                name, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
                if sep and name not in {"_", "PWD", "OLDPWD", "SHLVL"}:
                    env[name] = value
            self.env = env

    def close(self) -> None:
        """Stop what the blocks left running (a server started with ``&``)."""
        for group in self.groups:
            _kill_group(group)


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _unmet(block: Block, env: dict[str, str]) -> str | None:
    """What the block needs that is missing, or None."""
    for need in block.needs:
        if need == "postgres":
            try:
                require_postgres()
            except (pytest.skip.Exception, pytest.fail.Exception) as missing:
                return f"{block.id} needs PostgreSQL: {missing}"
            continue
        command = "moto_server" if need == "s3" else need
        if shutil.which(command, path=env.get("PATH")) is None:
            return f"{block.id} needs {command} on PATH"
    return None


def _run_file(session: Session, todo: list[Block]) -> dict[str, Outcome | str]:
    """One file's blocks in order, as a reader runs them: an outcome each, or what it needs."""
    results: dict[str, Outcome | str] = {}
    for block in todo:
        missing = _unmet(block, session.env)
        results[block.id] = missing if missing is not None else session.run(block)
    return results


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[dict[str, Outcome | str]]]]:
    """The files' sessions run side by side (each file's blocks in order, in one thread per
    file): every block the session selected, and the blocks before it in its file."""
    wanted = {
        item.callspec.params["block"].id
        for item in request.session.items
        if hasattr(item, "callspec") and "block" in item.callspec.params
    }
    sessions: list[Session] = []
    futures: dict[str, Future[dict[str, Outcome | str]]] = {}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        try:
            for doc in dict.fromkeys(block.doc for block in RUN_BLOCKS):
                mine = [block for block in RUN_BLOCKS if block.doc == doc]
                last = max((i for i, b in enumerate(mine) if b.id in wanted), default=None)
                if last is None:
                    continue
                session = Session(tmp_path_factory.mktemp(doc.replace("/", "_")), doc)
                sessions.append(session)
                future = pool.submit(_run_file, session, mine[: last + 1])
                futures.update(dict.fromkeys((block.id for block in mine[: last + 1]), future))
            yield futures
        finally:
            for future in futures.values():
                future.cancel()
            pool.shutdown(wait=True)
            for session in sessions:
                session.close()


def _report(block: Block, outcome: Outcome) -> str:
    output = outcome.output
    if len(output) > OUTPUT_SHOWN:
        output = (
            f"[... {len(output) - OUTPUT_SHOWN} characters before ...]\n{output[-OUTPUT_SHOWN:]}"
        )
    failures = "\n".join(f"  {block.doc}: {failure}" for failure in outcome.failures)
    return (
        f"{block.id}: the {block.lang} block fails as written\n{failures}\n"
        f"--- the block ---\n{block.text}--- its output ---\n{output}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.id for block in RUN_BLOCKS])
def test_doc_block_runs_as_written(
    block: Block, outcomes: dict[str, Future[dict[str, Outcome | str]]]
) -> None:
    outcome = outcomes[block.id].result()[block.id]
    if isinstance(outcome, str):  # something it needs is missing
        if IN_CI:
            pytest.fail(outcome, pytrace=False)
        pytest.skip(outcome)
    if outcome.failures:
        pytest.fail(_report(block, outcome), pytrace=False)


def test_doc_blocks_are_marked_well_and_counted(capsys: pytest.CaptureFixture[str]) -> None:
    """Every marker is well formed; every saved file is used by a later block of its file;
    the illustration-only blocks are counted and listed (the count is printed)."""
    problems: list[str] = []
    for block in ALL_BLOCKS:
        problems += [f"{block.id}: {problem}" for problem in block.problems]
        if block.markers and not block.runnable and "illustration" not in block.markers:
            problems.append(
                f"{block.id}: markers on a {block.lang or 'plain'} block: {block.markers}"
            )
        if block.lang == "console" and block.illustration is None and not block.console_commands():
            problems.append(f"{block.id}: a console block without a `$ ` command")
        if block.file_name is not None:
            later = [b.text for b in ALL_BLOCKS if b.doc == block.doc and b.line > block.line]
            if not any(block.file_name in text for text in later):
                problems.append(
                    f"{block.id}: saved as {block.file_name}, which no later block uses"
                )
    assert not problems, "\n".join(problems)
    assert RUN_BLOCKS, "no runnable block found"
    reasons = "".join(f"\n  {b.id}: {b.illustration}" for b in ILLUSTRATIONS)
    with capsys.disabled():
        print(
            f"\ndocs: {len(RUN_BLOCKS)} blocks run, {len(ILLUSTRATIONS)} illustration-only{reasons}"
        )
