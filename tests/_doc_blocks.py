"""The fenced code blocks of README.md and docs/*.md, as the docs test and the hashing-format
test read them: one extractor for both.

A block is a fence (three backticks and a language, at any indentation) up to its closing
fence. The HTML comments on the lines right before a fence are its **markers**, one
``<!-- KEY: VALUE -->`` each:

- ``illustration: REASON``: shown, not run (the reason is required);
- ``file: NAME``: the reader saves the block as NAME (the docs test writes it into the
  session's folder; a later block runs it);
- ``needs: WHAT ...``: what the block needs besides strongroom: ``postgres``, ``s3``, or
  commands that must be on PATH (``jq``, ``node``, ``sqlite3``).

Only these keys are markers; any other comment right before a fence is a mistake the docs
test reports (a mistyped ``illustration`` must not silently turn into a run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MARKER_KEYS",
    "RUNNABLE",
    "SHELL",
    "Block",
    "ConsoleCommand",
    "blocks",
    "doc_files",
]

ROOT = Path(__file__).resolve().parents[1]
SHELL = frozenset({"bash", "sh", "console"})
RUNNABLE = SHELL | {"python"}
MARKER_KEYS = frozenset({"illustration", "file", "needs"})

_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_COMMENT = re.compile(r"^\s*<!--(?P<body>.*?)-->\s*$")
_ERROR_LINE = re.compile(r"^error\[(?P<code>[a-z_]+)\]")


@dataclass(frozen=True)
class ConsoleCommand:
    """One ``$ `` command of a console block, with what its shown output says about it."""

    line: int  # the line of its ``$ `` in the Markdown file
    text: str  # the command, continuation lines joined with newlines
    error_code: str | None  # the shown output starts with ``error[CODE]``: it must fail so


@dataclass(frozen=True)
class Block:
    doc: str  # the file, relative to the repository: ``docs/cli.md``
    line: int  # the line of the opening fence (1-based)
    lang: str
    text: str  # the body, dedented by the fence's indentation
    markers: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # malformed markers

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def illustration(self) -> str | None:
        return self.markers.get("illustration")

    @property
    def file_name(self) -> str | None:
        return self.markers.get("file")

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(self.markers.get("needs", "").split())

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE or self.file_name is not None

    def console_commands(self) -> list[ConsoleCommand]:
        """The ``$ `` lines of a console block (a line ending in ``\\`` continues on the next
        one, with or without a ``> `` prompt); the lines after a command are its output."""
        commands: list[ConsoleCommand] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            start = i
            parts = [lines[i][2:]]
            while parts[-1].endswith("\\") and i + 1 < len(lines):
                i += 1
                parts.append(lines[i][2:] if lines[i].startswith("> ") else lines[i])
            i += 1
            shown = lines[i] if i < len(lines) and not lines[i].startswith("$ ") else ""
            error = _ERROR_LINE.match(shown)
            commands.append(
                ConsoleCommand(
                    line=self.line + 1 + start,
                    text="\n".join(parts),
                    error_code=error.group("code") if error else None,
                )
            )
        return commands


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md, in that order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _markers(lines: list[str], fence: int) -> tuple[dict[str, str], tuple[str, ...]]:
    markers: dict[str, str] = {}
    problems: list[str] = []
    i = fence - 1
    while i >= 0 and (comment := _COMMENT.match(lines[i])):
        key, colon, value = comment.group("body").strip().partition(":")
        key, value = key.strip(), value.strip()
        if key not in MARKER_KEYS or not colon:
            problems.append(
                f"line {i + 1}: not a marker (<!-- KEY: VALUE -->, KEY one of "
                f"{', '.join(sorted(MARKER_KEYS))}): {lines[i].strip()}"
            )
        elif not value:
            problems.append(f"line {i + 1}: marker {key!r} without a value")
        elif key in markers:
            problems.append(f"line {i + 1}: marker {key!r} given twice")
        else:
            markers[key] = value
        i -= 1
    return markers, tuple(problems)


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced block of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.resolve().relative_to(root.resolve()).as_posix()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = opening.group("indent")
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != f"{indent}```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc}:{i + 1}: a fence that is never closed")
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        markers, problems = _markers(lines, i)
        found.append(
            Block(
                doc=doc,
                line=i + 1,
                lang=opening.group("lang"),
                text="".join(f"{line}\n" for line in body),
                markers=markers,
                problems=problems,
            )
        )
        i = end + 1
    return found
