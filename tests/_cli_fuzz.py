"""The machinery of tests/test_cli_fuzz.py: the command tree read from the Typer app, hostile
values for each parameter, a seeded world (vault, keys, files, foreign vaults) restored before
every example, special files (a FIFO, a socket, a copy of /dev/null's device node), an in-process
invocation and the checks every outcome must pass.

What "unchanged" means: the vault's SQLite database is compared logically (a copy of
``vault.db`` and its ``-wal``, never the file itself, is opened and dumped with ``iterdump`` plus
its header pragmas), every other file of the world by type, size and SHA-256; a refused command
(exit != 0) must leave both as the seed left them. Foreign files (another program's SQLite
``vault.db``, a file that is not SQLite) must stay byte-for-byte the same whatever the exit code.

FIFOs never hang a run: a guard thread watches this process's threads (``/proc/self/task/*``)
while a command runs; a thread blocked opening a FIFO (kernel wait channel
``wait_for_partner``) or reading or writing one of ours is a finding (inputs that are not
regular files must be refused, not blocked on), and the guard then opens the other end so the
command can finish. The guard looks at what the threads are blocked in, never at how long they
took, so no outcome depends on the machine's speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from typer.testing import CliRunner

from strongroom.cli._context import EXIT_CODES, exit_code_for

SURVEY_ENV = "STRONGROOM_FUZZ_SURVEY"
"""A file name: append every finding to it as JSON lines instead of failing (a survey run)."""

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"
EXAMPLE_FILES = tuple(sorted(EXAMPLES.glob("*.yaml")))

VAULT_CREATORS = frozenset({("init",), ("run",), ("runs", "create"), ("demo",), ("import",)})
"""The commands that may create a vault (docs/cli.md, "Grammar"): import makes its target."""
RESUMABLE = frozenset({("export",), ("import",)})
"""Copies that leave a partial target when they fail after starting, for a re-run to complete
(docs/cli.md, export / import): only their source vault must be unchanged."""
"""Commands documented to create a missing vault; every other one must not."""

VERDICTS: dict[tuple[str, ...], int] = {("verify",): 1}
"""Exit codes that report what a command found, not a refusal: `verify` exits 1 when the vault
does not verify (e.g. its blobs are elsewhere) and records that outcome in the vault as a
``vault.verified`` audit entry (docs/cli.md, "verify"); only the vault's database may change."""

REFUSAL_ONLY: dict[tuple[str, ...], str] = {
    ("run",): "runs a playbook's tools in sandboxes: fuzzed only with values that must be "
    "refused before any work starts (no real playbook, run or tool)",
    ("resume",): "continues a run's playbook in sandboxes: fuzzed with runs that do not exist only",
    ("tools", "run"): "runs a tool in a sandbox: fuzzed with tools that do not exist only",
    ("demo",): "records the whole sample job through the sandboxed lane (seconds): fuzzed "
    "only against vaults it must refuse (foreign SQLite, not SQLite, a file)",
}
"""Commands that do real, slow work (sandboxes, child processes) when given valid input."""

EXCLUDED: dict[tuple[str, ...], str] = {}
"""Commands not fuzzed at all, with the reason (none today)."""

USAGE_CODES = {"usage_error": 2, "aborted": 1}
"""Codes the root group gives Typer's own errors (docs/cli.md: usage errors exit 2)."""

DOCUMENTED_EXITS = frozenset({0, 1, 2, *EXIT_CODES.values()})

NO_DIGITS_LIMIT = 5000  # past Python's 4,300-digit int() limit


# -- the command tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One Click parameter of a command, as the fuzzer needs it."""

    name: str
    is_argument: bool
    opts: tuple[str, ...]
    required: bool
    nargs: int
    multiple: bool
    is_flag: bool
    numeric: bool
    is_path: bool


@dataclass(frozen=True)
class CommandSpec:
    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def label(self) -> str:
        return " ".join(self.path)


def _annotation_kinds(param: Any) -> tuple[bool, bool]:
    """(numeric, is_path) from Typer's type descriptor, or Click's type name."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:
        type_name = str(getattr(getattr(param, "type", None), "name", "")).lower()
        return type_name in {"integer", "float", "integer range", "float range"}, "path" in (
            type_name
        )
    members: tuple[Any, ...] = (annotation,)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
    numeric = any(m in (int, float) for m in members)
    is_path = any(isinstance(m, type) and issubclass(m, os.PathLike) for m in members)
    return numeric, is_path


def command_tree(root: Any) -> list[CommandSpec]:
    """Every leaf command under ``root`` (a Click/Typer group), with its parameters."""
    found: list[CommandSpec] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        children = getattr(command, "commands", None)
        if isinstance(children, Mapping):  # the root's is a lazy mapping, not a dict
            for name, child in sorted(children.items()):
                walk(child, (*path, name))
            return
        params = []
        for p in command.params:
            is_argument = not hasattr(p, "is_flag")
            numeric, is_path = _annotation_kinds(p)
            params.append(
                Param(
                    name=str(p.name),
                    is_argument=is_argument,
                    opts=tuple(p.opts) + tuple(getattr(p, "secondary_opts", ())),
                    required=bool(p.required),
                    nargs=int(p.nargs),
                    multiple=bool(getattr(p, "multiple", False)),
                    is_flag=bool(getattr(p, "is_flag", False) or getattr(p, "count", False)),
                    numeric=numeric,
                    is_path=is_path,
                )
            )
        found.append(CommandSpec(path, tuple(params)))

    walk(root, ())
    return found


# -- the world: a seeded vault and the files around it --------------------------------------------


@dataclass
class World:
    """Paths of the fuzzed world. ``root`` is restored from ``pristine`` before each example;
    ``nodes`` (FIFO, socket, device) lives outside it and is checked after each example."""

    root: Path
    pristine: Path
    nodes: Path
    scratch: Path
    ids: dict[str, list[str]] = field(default_factory=dict)
    fifos: list[Path] = field(default_factory=list)
    device: Path | None = None
    socket_path: Path | None = None
    _stats: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _database: str = ""

    # Layout (relative to root)
    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def vault(self) -> Path:
        return self.cwd / ".strongroom"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def foreign_dirs(self) -> tuple[Path, ...]:
        return (self.root / "foreign-sqlite", self.root / "not-sqlite")

    @property
    def foreign_files(self) -> tuple[Path, ...]:
        return (self.root / "other.sqlite", self.root / "other.bin")

    @property
    def missing_vault(self) -> Path:
        return self.root / "no-vault-here"

    @property
    def missing_dir(self) -> Path:
        return self.root / "newdir"

    def restore(self) -> None:
        """Put back what the last command changed (by comparing each entry's stat with the
        pristine copy's: far cheaper than copying the whole world on a slow disk)."""
        os.chdir(self.root.parent)
        for rel, what in self.changed_entries():
            target, source = self.root / rel, self.pristine / rel
            if os.path.lexists(target):
                _remove(target)
            if what != "added" and os.path.lexists(source):
                if source.is_dir() and not source.is_symlink():
                    shutil.copytree(source, target, symlinks=True)
                else:
                    shutil.copy2(source, target, follow_symlinks=False)
        os.chdir(self.cwd)

    def freeze(self) -> None:
        """Take the current world as the pristine one (after seeding)."""
        os.chdir(self.root.parent)
        if self.pristine.exists():
            shutil.rmtree(self.pristine)
        shutil.copytree(self.root, self.pristine, symlinks=True)
        shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root, symlinks=True)
        os.chdir(self.cwd)
        self._stats = self.scan()
        self._database = self._database_print(self.vault)

    def scan(self) -> dict[str, tuple[int, ...]]:
        """Every entry under root: (type and mode, size, mtime, device number); a folder's
        size and mtime left out (adding or removing an entry shows as that entry)."""
        stats: dict[str, tuple[int, ...]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in (*dirnames, *filenames):
                path = os.path.join(dirpath, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                rel = os.path.relpath(path, self.root)
                if stat.S_ISDIR(info.st_mode):
                    stats[rel] = (info.st_mode,)
                else:
                    stats[rel] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_rdev)
        return stats

    def changed_entries(self) -> list[tuple[str, str]]:
        """(relative path, added/removed/changed) for every entry unlike the pristine one,
        outermost first (a removed folder hides its entries)."""
        now = self.scan()
        changes: list[tuple[str, str]] = []
        for rel in sorted(set(now) | set(self._stats), key=lambda r: (r.count(os.sep), r)):
            if any(rel.startswith(done + os.sep) for done, _ in changes):
                continue
            if rel not in self._stats:
                changes.append((rel, "added"))
            elif rel not in now:
                changes.append((rel, "removed"))
            elif now[rel] != self._stats[rel]:
                changes.append((rel, "changed"))
        return changes

    def changes(self) -> list[str]:
        """What differs from the pristine world in content: files by bytes, the vault's
        database logically (a checkpoint that moves pages is no change)."""
        found = []
        db_files = {str(self.vault.relative_to(self.root) / n) for n in _DB_NAMES}
        database_touched = False
        for rel, what in self.changed_entries():
            if rel in db_files:
                database_touched = True
                continue
            if what == "changed" and _file_print(self.root / rel) == _file_print(
                self.pristine / rel
            ):
                continue
            found.append(f"{rel} {what}")
        if database_touched and self._database_print(self.vault) != self._database:
            found.append("vault.db changed (its SQL dump differs)")
        return found

    def _database_print(self, vault: Path) -> str:
        db = vault / "vault.db"
        if not db.is_file():
            return "missing" if not db.exists() else f"not a file: {_file_print(db)}"
        copy_dir = self.scratch / "dbcopy"
        if copy_dir.exists():
            shutil.rmtree(copy_dir)
        copy_dir.mkdir(parents=True)
        shutil.copyfile(db, copy_dir / "vault.db")
        wal = vault / "vault.db-wal"
        if wal.is_file():
            shutil.copyfile(wal, copy_dir / "vault.db-wal")
        digest = hashlib.sha256()
        connection = sqlite3.connect(copy_dir / "vault.db")
        try:
            for pragma in ("user_version", "application_id", "journal_mode"):
                row = connection.execute(f"PRAGMA {pragma}").fetchone()
                digest.update(f"{pragma}={row}\n".encode())
            for line in connection.iterdump():
                digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        except sqlite3.Error as exc:
            return f"unreadable: {exc}"
        finally:
            connection.close()
        return digest.hexdigest()

    def foreign_bytes(self) -> dict[str, str]:
        """What must never change: the foreign vault folders and files, byte for byte."""
        prints = {}
        for base in (*self.foreign_dirs, *self.foreign_files):
            if base.is_dir() and not base.is_symlink():
                for path in sorted(base.rglob("*")):
                    prints[str(path.relative_to(self.root))] = _file_print(path)
            prints[str(base.relative_to(self.root))] = _file_print(base)
        return prints

    def node_problems(self) -> list[str]:
        """Special nodes that are no longer what they were; each one is recreated."""
        problems = []
        for fifo in self.fifos:
            if not _is(fifo, stat.S_ISFIFO):
                problems.append(f"the FIFO {fifo.name} was replaced ({_file_print(fifo)})")
                _remove(fifo)
                os.mkfifo(fifo)
        if self.device is not None:
            st_ = os.lstat(self.device) if os.path.lexists(self.device) else None
            null_rdev = os.stat("/dev/null").st_rdev
            if st_ is None or not stat.S_ISCHR(st_.st_mode) or st_.st_rdev != null_rdev:
                problems.append(
                    f"the device node {self.device.name} was replaced ({_file_print(self.device)})"
                )
                _remove(self.device)
                os.mknod(self.device, 0o666 | stat.S_IFCHR, null_rdev)
        if self.socket_path is not None and not _is(self.socket_path, stat.S_ISSOCK):
            problems.append(f"the socket {self.socket_path.name} was replaced")
        return problems


def _diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changes = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            what = "added" if key not in before else "removed" if key not in after else "changed"
            changes.append(f"{key} {what}")
    return changes


def _top(change: str) -> str:
    """``foreign-sqlite/blobs/sha256/ab added`` -> ``foreign-sqlite/blobs added``."""
    path, _, what = change.rpartition(" ")
    return " ".join(("/".join(path.split("/")[:2]), what))


_DB_NAMES = ("vault.db", "vault.db-wal", "vault.db-shm")


def _is(path: Path, test: Callable[[int], bool]) -> bool:
    try:
        return test(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _file_print(path: Path) -> str:
    try:
        info = os.lstat(path)
    except OSError:
        return "missing"
    mode = info.st_mode
    if stat.S_ISREG(mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return f"file {info.st_size} {digest}"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return f"symlink {os.readlink(path)}"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return f"char device {info.st_rdev}"
    return f"mode {mode:o}"


def make_special_nodes(world: World) -> list[socket.socket]:
    """The FIFO, the socket and (as root) a char device numbered like /dev/null."""
    world.nodes.mkdir(parents=True, exist_ok=True)
    fifo = world.nodes / "fifo"
    os.mkfifo(fifo)
    world.fifos = [fifo]
    sockets = []
    sock_path = world.nodes / "sock"
    if len(str(sock_path)) < 100:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        sockets.append(listener)
        world.socket_path = sock_path
    if os.geteuid() == 0:
        device = world.nodes / "null-device"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
        world.device = device
    return sockets


def write_world_files(world: World) -> None:
    """Input files of every kind the fuzzer points commands at."""
    files = world.files
    files.mkdir(parents=True)
    (files / "a.txt").write_text("hello\n")
    (files / "data.json").write_text('{"a": 1, "b": [1, 2]}\n')
    (files / "obj.json").write_text('{"k": "v"}\n')
    (files / "empty").write_bytes(b"")
    (files / "invalid-utf8.bin").write_bytes(b"\xff\xfe\xfd{\x00\x80")
    (files / "deep.json").write_text("[" * 100_000)
    (files / "deep-valid.json").write_text("[" * 50_000 + "]" * 50_000)
    (files / "nan.json").write_text('{"x": NaN, "y": 1e999, "z": -Infinity}')
    (files / "surrogate.json").write_text('{"a": "\\ud800", "b": "\\udfff"}')
    (files / "bigint.json").write_text('{"a": ' + "9" * NO_DIGITS_LIMIT + "}")
    (files / "lines.jsonl").write_text('{"a": 1}\n{"a": NaN}\n')
    (files / "bad.yaml").write_text("kind: [unclosed\n")
    registry = files / "registry"
    registry.mkdir()
    for example in EXAMPLE_FILES:
        shutil.copyfile(example, registry / example.name)
    (world.root / "dirs" / "outdir").mkdir(parents=True)
    (world.root / "altblobs").mkdir()
    (world.root / "exports").mkdir()
    # Foreign vaults: another program's SQLite vault.db, a vault.db that is not SQLite, and the
    # same as plain files.
    for folder in world.foreign_dirs:
        folder.mkdir()
    _foreign_sqlite(world.foreign_dirs[0] / "vault.db")
    (world.foreign_dirs[1] / "vault.db").write_bytes(b"this is not a database\n" * 64)
    _foreign_sqlite(world.foreign_files[0])
    world.foreign_files[1].write_bytes(os.urandom(4096))


def _foreign_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.execute("INSERT INTO notes (body) VALUES ('not a strongroom vault')")
    connection.close()


# -- values -------------------------------------------------------------------------------------


def as_argv(word: str) -> str:
    """The word as a real argv carries it: Python decodes argv bytes with surrogateescape, so
    only U+DC80..U+DCFF can appear as lone surrogates; any other surrogate becomes the escaped
    bytes of its UTF-8 form (what a program passing those bytes would produce)."""
    return os.fsdecode(word.encode("utf-8", "surrogatepass"))


def _no_nul_no_slash(text: str) -> str:
    """Garbage must not name real places: no NUL (argv cannot carry it), no path separator."""
    return text.replace("\x00", "").replace("/", "_")


HUGE = "A" * 100_000
HUGE_WIDE = "é" * 50_000
SURROGATES = (
    "\ud800",
    "a\udfffb",
    "\udcff\udcfe",  # b"\xff\xfe" as Python's argv decodes it (surrogateescape)
    os.fsdecode(b"caf\xe9"),  # Latin-1 é: invalid UTF-8
    os.fsdecode(b"\xc3\x28"),
    "\ud83d",  # half an emoji
)
CONTROL = (
    "\x1b[31mred\x1b[0m",
    "line\nbreak",
    "tab\there",
    "cr\rreturn",
    "\x7f\x08\x07",
    "\u202eevil",
    "\ufeffbom",
    "\u2028sep",
    " ",
    "",
)
GARBAGE_IDS = (
    "x",
    "not-a-uuid",
    "0",
    "-",
    "--",
    "-1",
    ".",
    "..",
    "@",
    "@@",
    "%s%n%x",
    "' OR 1=1 --",
    "${HOME}",
    "$(id)",
    "*",
    "?",
    "sha256:" + "0" * 64,
    "x@y@z",
    "@production",
    "tool@",
    "00000000-0000-0000-0000-000000000000",
    "01890000-0000-7000-8000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
)
NUMBERS = (
    "0",
    "-1",
    "1",
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "2147483648",
    "1e3",
    "1.5",
    "NaN",
    "inf",
    "-0",
    " 7 ",
    "0x10",
    "1_000",
    "१२",  # Devanagari digits: int() accepts them
    "9" * NO_DIGITS_LIMIT,
)
JSONS = (
    "[" * 100_000,
    "{" * 50_000,
    '{"a":' * 20_000 + "1" + "}" * 20_000,
    "[" * 10_000 + "]" * 10_000,
    "NaN",
    "Infinity",
    '{"x": NaN, "y": 1e999}',
    '{"x": Infinity, "y": -Infinity}',
    '{"x": 1e999}',
    '{"a": ' + "9" * NO_DIGITS_LIMIT + "}",
    '{"a": 99999999999999999999999999}',
    '{"a": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": 1, "a": 2}',
    '{"": null}',
    "[]",
    "null",
    '"string"',
    "{",
    "{'a': 1}",
    '{"a": "' + HUGE[:60_000] + '"}',
)


def text_garbage() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(GARBAGE_IDS),
        st.sampled_from(CONTROL),
        st.sampled_from(SURROGATES),
        st.sampled_from((HUGE, HUGE_WIDE, "x" * 1001, "x" * 257, "é" * 1001)),
        st.uuids().map(str),
        st.text(max_size=40).map(_no_nul_no_slash),
        st.binary(min_size=1, max_size=40).map(
            lambda b: _no_nul_no_slash(os.fsdecode(b.replace(b"\x00", b"")))
        ),
    )


def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NUMBERS),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    )


def special_paths(world: World, *, for_output: bool = False) -> list[str]:
    """Paths of every awkward kind, all inside the test's temporary folders."""
    nodes = [str(p) for p in world.fifos]
    if world.socket_path is not None:
        nodes.append(str(world.socket_path))
    if world.device is not None:
        nodes.append(str(world.device))
    outdir = world.root / "dirs" / "outdir"
    paths = [
        *nodes,
        str(outdir),
        str(outdir) + "/",
        str(world.missing_dir) + "/",
        str(world.missing_dir / "deeper") + "/",
        str(world.root / "missing.txt"),
        str(world.root / "no" / "such" / "parent" / "file"),
        str(world.files / "a.txt") + "/",
        "../dirs/outdir",
        "./",
        str(world.foreign_files[0]),
    ]
    if not for_output:
        paths += [
            str(world.files / name)
            for name in (
                "a.txt",
                "empty",
                "invalid-utf8.bin",
                "deep.json",
                "nan.json",
                "bigint.json",
                "bad.yaml",
            )
        ]
    return paths


def json_values(world: World) -> st.SearchStrategy[str]:
    files = [
        "@" + p
        for p in (
            *special_paths(world),
            str(world.files / "deep-valid.json"),
            str(world.files / "surrogate.json"),
        )
    ]
    return st.one_of(st.sampled_from(JSONS), st.sampled_from([*files, "@", "@-"]))


# -- plausible values by parameter name ----------------------------------------------------------


def plausible(world: World, spec: CommandSpec, param: Param) -> st.SearchStrategy[str] | None:
    """Values that get a command past its first checks, so the hostile one meets deep code.
    None: nothing better than the generic text for this parameter."""
    ids = world.ids
    files = world.files
    home = world.home
    name = param.name.rstrip("_")
    group = spec.path[0]
    table: dict[str, Sequence[str]] = {
        "run_id": ids["run"],
        "run": ids["run"],
        "artifact_id": ids["artifact"],
        "approval_id": ids["approval"],
        "approval": ids["approval"],
        "key_id": ids["key"],
        "definition_id": ids["definition"],
        "version": ids["version"],
        "reference": ids["reference"],
        "a": ids["reference"],
        "b": ids["reference"],
        "file": [str(files / "a.txt"), str(files / "data.json"), "-"],
        "files": [str(p) for p in sorted((files / "registry").iterdir())],
        "name": ["carol", "alice", "note.txt"],
        "public_key": [str(home / "carol.pem.pub"), str(home / "bob.pem.pub"), "ab" * 32],
        "phase": ["translate"],
        "step": ["s1"],
        "label": ["fr"],
        "format": ["json", "txt", "binary", "jsonl", "csv"],
        "tag": ["t1"],
        "description": ["a description"],
        "metadata": ['{"k": 1}', "@" + str(files / "obj.json")],
        "data": ['{"a": 1}', "@" + str(files / "obj.json")],
        "input": ['{"a": 1}', "@" + str(files / "obj.json")],
        "output": [
            str(world.root / "dirs" / "outdir"),
            str(world.root / "dirs" / "outdir") + "/",
            str(world.root / "out.bin"),
            "-",
        ],
        "status": ["running", "completed", "created", "failed", "cancelled"],
        "project": ["demo"],
        "playbook": ["data-quality-nightly"],
        "purpose": ["fuzzing"],
        "actor": ["alice", "carol"],
        "since": ["2025-01-01"],
        "until": ["2999-01-01T00:00:00Z"],
        "expires": ["2999-01-01"],
        "search": ["seed"],
        "limit": ["1", "10"],
        "tail": ["1", "10"],
        "after": ["0", "1", "5"],
        "cursor": ids["cursor"],
        "level": ["info", "warning", "error"],
        "event": ["step"],
        "message": ["a message"],
        "outcome": ["ok"],
        "code": ["E_TEST"],
        "reason": ["because"],
        "kind": ["tool_manifest", "playbook", "sandbox_policy", "project"],
        "channel": ["draft", "production"],
        "tool": ["fetch_object_storage@1.0.0", "data-quality-tools@1.0.0"],
        "promotion": ["data-quality-tools@1.0.0"],
        "scope": ["promotion", "tool_version", "run"],
        "key": [str(home / "alice.pem"), str(home / "bob.pem"), str(home / "carol.pem")],
        "path": [str(home / "new.pem"), str(home / "alice.pem")],
        "anchor": [str(world.root / "anchors.jsonl")],
        "trusted_key": [str(home / "alice.pem.pub")],
        "to_blobs": [str(world.root / "altblobs")],
        "from_blobs": [str(world.root / "altblobs")],
        "governance": ["A0", "A1", "A2", "A3"],
        "timeout": ["5"],
        "workdir": [str(world.root / "dirs" / "outdir")],
        "tool_path": [str(world.root / "dirs" / "outdir")],
        "max_parallel": ["1", "2"],
    }
    if name == "role":
        table["role"] = (
            ["admin", "publisher", "operator"]
            if group == "actors"
            else ["custom", "phase_output", "logs"]
        )
    if name == "to":
        table["to"] = (
            ["production", "staging", "draft"]
            if group == "registry"
            else [str(world.root / "anchors.jsonl"), str(world.root / "exports")]
            if group == "audit"
            else [str(world.root / "exports" / "bundle"), "memory://"]
        )
    if name == "from":
        table["from"] = [str(world.root / "seed-bundle"), "memory://"]
    values = table.get(name)
    if not values:
        return None
    return st.sampled_from(list(values))


PATH_PARAMS = frozenset(
    {"output", "file", "files", "path", "key", "anchor", "trusted_key", "to", "from", "workdir",
     "tool_path", "public_key", "playbook", "to_blobs", "from_blobs"}
)  # fmt: skip
"""Parameters that name files or folders (besides those typed ``Path``)."""


def hostile(world: World, param: Param) -> st.SearchStrategy[str]:
    strategies = [text_garbage(), st.sampled_from(special_paths(world))]
    if param.is_path or param.name.rstrip("_") in PATH_PARAMS:
        strategies.reverse()
    if param.numeric or param.name in {"limit", "tail", "after", "timeout", "max_parallel"}:
        strategies.insert(0, numbers())
    if param.name.rstrip("_") in {"metadata", "data", "input", "outcome", "public_key"}:
        strategies.insert(0, json_values(world))
    else:
        strategies.append(json_values(world))
    return st.one_of(strategies)


# -- invocations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    spec: CommandSpec
    argv: tuple[str, ...]
    stdin: bytes
    json: bool
    vault_choice: str

    def shown(self, places: dict[str, str] | None = None) -> str:
        """The command line as a shell would take it, with the test's folders written as
        variables (``places``: path -> name) and long values written as ``$(printf ...)``."""
        words = []
        for word in ("strongroom", *self.argv):
            quoted = _shown_word(word)
            for path, name in (places or {}).items():
                quoted = quoted.replace(path, "$" + name)
            words.append(quoted)
        return " ".join(words)


def _shown_word(word: str) -> str:
    if len(word) > 200:
        head = word[:16]
        if len(set(word)) == 1:
            return f"\"$(printf '{_quote_inner(word[0])}%.0s' $(seq {len(word)}))\""
        for unit in range(1, 12):
            piece = word[:unit]
            count = len(word) // unit
            if piece * count == word:
                return f"\"$(printf '{_quote_inner(piece)}%.0s' $(seq {count}))\""
        return f"<{len(word)} chars starting {_quote(head)}>"
    return _quote(word)


def _quote_inner(text: str) -> str:
    """The bytes of ``text`` (as argv would carry them) for bash's ``$'...'``."""
    out = []
    for byte in os.fsencode(text):
        char = chr(byte)
        if 0x20 <= byte < 0x7F and char not in "'\\":
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _quote(word: str) -> str:
    if word and re.fullmatch(r"[\w@%+=:,./-]+", word, flags=re.ASCII):
        return word
    if all(c.isprintable() and not 0xD800 <= ord(c) < 0xE000 for c in word):
        return "'" + word.replace("'", "'\\''") + "'"
    return "$'" + _quote_inner(word) + "'"


STDINS = (
    b"",
    b"hello\n",
    b'{"a": 1}\n',
    b'{"a": NaN}\n',
    b"[" * 100_000 + b"\n",
    b"\xff\xfe\x00binary\n",
)


def vault_choices(world: World, spec: CommandSpec) -> list[tuple[str, list[str]]]:
    """(label, global options) for the vault: found from the current folder, named, foreign."""
    refusing = [
        ("foreign sqlite dir", ["--vault", str(world.foreign_dirs[0])]),
        ("not-sqlite dir", ["--vault", str(world.foreign_dirs[1])]),
        ("sqlite file", ["--vault", str(world.foreign_files[0])]),
        ("not-sqlite file", ["--vault", str(world.foreign_files[1])]),
    ]
    if spec.path == ("demo",):
        return refusing
    good: list[tuple[str, list[str]]] = [("found", []), ("named", ["--vault", str(world.vault)])]
    return [
        *good * 15,
        *refusing,
        ("missing", ["--vault", str(world.missing_vault)]),
        ("memory", ["--vault", "memory://"]),
        ("empty", ["--vault", ""]),
        ("garbage", ["--vault", "nope://x"]),
    ]


@st.composite
def invocations(draw: st.DrawFn, world: World, specs: Sequence[CommandSpec]) -> Invocation:
    spec = draw(st.sampled_from(list(specs)))
    refusal_only = spec.path in REFUSAL_ONLY
    vault_label, global_opts = draw(st.sampled_from(vault_choices(world, spec)))
    global_opts = list(global_opts)
    if not refusal_only and draw(st.integers(0, 9)) == 0:
        global_opts += [
            "--blobs",
            draw(
                st.sampled_from(
                    [
                        "memory://",
                        str(world.root / "altblobs"),
                        str(world.foreign_files[1]),
                        str(world.missing_dir) + "/",
                        "nope://x",
                    ]
                )
            ),
        ]
    as_json = draw(st.booleans())
    json_where = draw(st.sampled_from(["global", "command"])) if as_json else ""
    if json_where == "global":
        global_opts.insert(0, "--json")
    positional: list[str] = []
    option_groups: list[list[str]] = []
    # Half the examples make one parameter hostile and the others plausible (hostile values
    # reach deep code, and a finding names its culprit); the rest mix freely.
    target = draw(st.sampled_from([None, *(p.name for p in spec.params), *[""] * 3]))
    for param in spec.params:
        if param.name == "json_flag" or param.opts == ("--json",):
            if json_where == "command":
                option_groups.append(["--json"])
            continue

        def value(param: Param = param) -> str:
            good = None if refusal_only else plausible(world, spec, param)
            bad = hostile(world, param)
            if target and target != param.name:
                return draw(good if good is not None else st.sampled_from(["x", "1"]))
            if good is None or target == param.name:
                return draw(bad)
            return draw(st.one_of(good, bad, good))

        if param.is_argument:
            if param.required and draw(st.integers(0, 19)) == 0:
                continue  # a missing argument: a usage error
            if not param.required and draw(st.booleans()):
                continue
            count = draw(st.integers(1, 3)) if param.nargs == -1 else max(param.nargs, 1)
            positional += [value() for _ in range(count)]
            continue
        include = draw(st.integers(0, 19)) != 0 if param.required else draw(st.integers(0, 9)) < 4
        if not include:
            continue
        flag_names = [o for o in param.opts if o.startswith("-")]
        if not flag_names:
            continue
        spelling = draw(st.sampled_from(flag_names))
        if param.is_flag:
            option_groups.append([spelling])
            continue
        repeats = draw(st.integers(1, 3)) if param.multiple else 1
        for _ in range(repeats):
            word = value()
            if spelling.startswith("--") and draw(st.integers(0, 3)) == 0:
                option_groups.append([f"{spelling}={word}"])
            else:
                option_groups.append([spelling, word])
    if draw(st.integers(0, 29)) == 0:
        option_groups.append(["--no-such-option"])
    option_groups = draw(st.permutations(option_groups)) if option_groups else []
    options = [word for group in option_groups for word in group]
    if positional and any(p.startswith("-") for p in positional) and draw(st.booleans()):
        positional = ["--", *positional]
    tail = (options + positional) if draw(st.booleans()) else (positional + options)
    if positional and positional[0] == "--":
        tail = options + positional
    if json_where == "command" and "--json" not in options:
        global_opts.insert(0, "--json")  # the command has no --json of its own
    stdin = draw(st.sampled_from(STDINS))
    argv = tuple(as_argv(word) for word in (*global_opts, *spec.path, *tail))
    return Invocation(spec, tuple(argv), stdin, as_json, vault_label)


# -- running a command --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    escaped: BaseException | None


def invoke(root: Any, argv: Sequence[str], stdin: bytes = b"") -> Outcome:
    """Run ``strongroom ARGV`` in this process, as the console script would (the root group's
    main in standalone mode), stdin given, stdout strict UTF-8 like a terminal's."""
    runner = CliRunner()
    escaped: BaseException | None = None
    exit_code = 0
    with runner.isolation(input=stdin) as (out, err, _):
        try:
            root.main(args=list(argv), prog_name="strongroom")
        except SystemExit as exc:
            code = exc.code
            exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException as exc:  # a bug in the last line of defence
            escaped = exc
            exit_code = -1
        finally:
            with suppress(Exception):
                import sys

                sys.stdout.flush()
                sys.stderr.flush()
        stdout = out.getvalue().decode("utf-8", "backslashreplace")
        stderr = err.getvalue().decode("utf-8", "backslashreplace")
    return Outcome(exit_code, stdout, stderr, escaped)


class FifoGuard:
    """Unblocks any thread of this process stuck on one of our FIFOs, and says so."""

    def __init__(self, fifos: Sequence[Path]) -> None:
        self.fifos = [str(f) for f in fifos]
        self._stop = threading.Event()
        self._active = threading.Event()
        self._lock = threading.Lock()
        self._findings: list[str] = []
        self._held: list[int] = []
        self._thread = threading.Thread(target=self._loop, name="fifo-guard", daemon=True)
        self.supported = Path(f"/proc/self/task/{threading.get_native_id()}/wchan").exists()

    def start(self) -> None:
        if self.supported:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._release()

    @contextmanager
    def watch(self) -> Iterator[list[str]]:
        findings: list[str] = []
        with self._lock:
            self._findings = findings
        self._active.set()
        try:
            yield findings
        finally:
            self._active.clear()
            with self._lock:
                self._release()

    def _loop(self) -> None:
        me = threading.get_native_id()
        while not self._stop.wait(0.01):
            if self._active.is_set():
                with self._lock:
                    if self._active.is_set():
                        self._scan(me)

    def _scan(self, me: int) -> None:
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return
        for task in tasks:
            if task == str(me):
                continue
            try:
                wchan = Path(f"/proc/self/task/{task}/wchan").read_text()
            except OSError:
                continue
            if wchan == "wait_for_partner":
                self._note("a thread blocked opening a FIFO (a non-regular file was opened)")
                self._unjam()
            elif "pipe_read" in wchan or "pipe_write" in wchan or "pipe_wait" in wchan:
                fifo = self._blocked_on(task)
                if fifo is not None:
                    what = "reading" if "read" in wchan else "writing"
                    self._note(f"a thread blocked {what} the FIFO {Path(fifo).name}")
                    self._unjam()

    def _blocked_on(self, task: str) -> str | None:
        try:
            fields = Path(f"/proc/self/task/{task}/syscall").read_text().split()
            fd = int(fields[1], 16)
            target = os.readlink(f"/proc/self/fd/{fd}")
        except (OSError, ValueError, IndexError):
            return None
        return target if target in self.fifos else None

    def _note(self, finding: str) -> None:
        if finding not in self._findings:
            self._findings.append(finding)

    def _unjam(self) -> None:
        for fifo in self.fifos:
            if not _is(Path(fifo), stat.S_ISFIFO):
                continue
            with suppress(OSError):
                reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                self._held.append(reader)
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(writer)
        for fd in self._held:
            with suppress(OSError):
                while os.read(fd, 65536):
                    pass

    def _release(self) -> None:
        for fd in self._held:
            with suppress(OSError):
                os.close(fd)
        self._held.clear()


# -- checks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str


def error_line(outcome: Outcome) -> str:
    """The error the command reported: the JSON error's code and message, or stderr's line."""
    with suppress(ValueError):
        document = json.loads(outcome.stdout)
        if isinstance(document, dict) and isinstance(document.get("error"), dict):
            error = document["error"]
            return f"error[{error.get('code')}]: {error.get('message')}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else outcome.stdout.strip()[-300:]


def output_problems(invocation: Invocation, outcome: Outcome) -> list[Problem]:
    problems = []
    if outcome.escaped is not None:
        problems.append(
            Problem("escaped", f"{type(outcome.escaped).__name__}: {outcome.escaped}"[:300])
        )
    if outcome.exit_code == 70:
        problems.append(Problem("internal", error_line(outcome)[:300]))
    elif outcome.exit_code not in DOCUMENTED_EXITS and outcome.escaped is None:
        problems.append(Problem("undocumented_exit", f"exit {outcome.exit_code}"))
    for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        if "Traceback (most recent call last)" in text:
            problems.append(Problem("traceback", f"a traceback on {stream}"))
    if outcome.exit_code == 0:
        accepted = [v for v in _json_option_values(invocation) if _non_finite(v)]
        if accepted:
            problems.append(Problem("non_finite_accepted", f"accepted {accepted[0][:60]!r}"))
    if invocation.json:
        problems += _json_problems(outcome)
    elif outcome.exit_code not in (0, 1) and not outcome.stderr.strip():
        problems.append(Problem("silent_failure", f"exit {outcome.exit_code}, nothing on stderr"))
    return problems


JSON_OPTIONS = ("--data", "--metadata", "--input", "-i")
"""Options whose value is JSON (inline or ``@file``): NaN and Infinity must be refused."""


def _json_option_values(invocation: Invocation) -> list[str]:
    values = []
    argv = invocation.argv
    for index, word in enumerate(argv):
        name, eq, value = word.partition("=")
        if name in JSON_OPTIONS and eq:
            values.append(value)
        elif word in JSON_OPTIONS and index + 1 < len(argv):
            values.append(argv[index + 1])
    return values


def _non_finite(value: str) -> bool:
    if value.startswith("@"):
        return Path(value[1:]).name in {"nan.json", "lines.jsonl"}
    return value.lstrip().startswith(("NaN", "Infinity")) or any(
        token in value for token in (": NaN", ": Infinity", ": -Infinity", "1e999")
    )


def _json_problems(outcome: Outcome) -> list[Problem]:
    try:
        document = json.loads(outcome.stdout)
    except ValueError as exc:
        shown = outcome.stdout[:120]
        return [Problem("not_json", f"--json stdout is not one JSON document ({exc}): {shown!r}")]
    if outcome.exit_code in (0, 1) and not (isinstance(document, dict) and "error" in document):
        return []
    if not isinstance(document, dict) or set(document) != {"error"}:
        return [Problem("json_error_shape", f"exit {outcome.exit_code} without an error document")]
    error = document["error"]
    if not (
        isinstance(error, dict)
        and set(error) == {"code", "message", "details"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
        and isinstance(error["details"], dict)
    ):
        return [Problem("json_error_shape", f"error document {json.dumps(error)[:200]}")]
    expected = USAGE_CODES.get(error["code"]) or exit_code_for(error["code"])
    if outcome.exit_code != expected and outcome.exit_code != 70:
        return [
            Problem(
                "exit_mismatch",
                f"error[{error['code']}] exited {outcome.exit_code}, documented {expected}",
            )
        ]
    return []


def world_problems(
    world: World, invocation: Invocation, outcome: Outcome, foreign_before: dict[str, str]
) -> list[Problem]:
    problems = [Problem("special_node", p) for p in world.node_problems()]
    foreign_changes = _diff(foreign_before, world.foreign_bytes())
    if foreign_changes:
        shown = sorted({_top(change) for change in foreign_changes})
        problems.append(Problem("foreign_vault_changed", ", ".join(shown)))
    created = world.missing_vault.exists()
    if created and (outcome.exit_code != 0 or invocation.spec.path not in VAULT_CREATORS):
        problems.append(
            Problem(
                "vault_created", f"{world.missing_vault.name} created (exit {outcome.exit_code})"
            )
        )
    if world.missing_dir.exists() and not world.missing_dir.is_dir():
        problems.append(
            Problem(
                "trailing_slash",
                f"'{world.missing_dir.name}/' became a {_file_print(world.missing_dir).split()[0]}",
            )
        )
    if outcome.exit_code != 0:
        changes = world.changes()
        if invocation.spec.path in RESUMABLE and outcome.exit_code != 2:
            vault = str(world.vault.relative_to(world.root))
            keep = invocation.spec.path == ("export",)  # the source is the world's vault
            changes = [c for c in changes if keep and (c.startswith(vault) or "vault.db" in c)]
        if VERDICTS.get(invocation.spec.path) == outcome.exit_code:
            changes = [c for c in changes if not c.startswith("vault.db")]
        if changes:
            problems.append(Problem("refused_but_changed", ", ".join(changes)[:400]))
    return problems


_MASKS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"/[^\s'\":]*"), "<path>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"'[^']*'"), "'…'"),
)


def signature(invocation: Invocation, problem: Problem) -> str:
    """Groups findings: the command, the kind, the message with ids, paths and numbers masked."""
    detail = problem.detail
    for pattern, mask in _MASKS:
        detail = pattern.sub(mask, detail)
    return f"{invocation.spec.label} | {problem.kind} | {detail[:120]}"
