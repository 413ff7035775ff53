"""Which code a tool may load: tool paths never shadow strongroom, the standard library or
an installed package, and built-in tools load from the installed strongroom only.

A tool path holding a ``strongroom/`` folder used to come first on the sandboxed
interpreter's import path and replace the built-in reference tools with foreign code, which
then got host services. Now the runner refuses such a path before anything runs, gives a
built-in tool no tool path at all, and the bootstrap appends tool paths after the runtime's
own (defence in depth, for a module this check cannot know about).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from strongroom.errors import SandboxViolation

__all__ = ["BUILTIN_PACKAGE", "check_tool_paths", "import_path_for"]

BUILTIN_PACKAGE = "strongroom"
_MODULE_SUFFIXES = (".py", ".pyc", ".pyd", ".so", ".pth")
_MAX_ENTRIES = 100_000  # names looked at per tool path (a huge folder is not a reason to hang)


@functools.cache
def _protected_names() -> frozenset[str]:
    """strongroom, every standard-library module and every installed top-level name."""
    names = {BUILTIN_PACKAGE, *sys.stdlib_module_names, *sys.builtin_module_names}
    names.update(importlib.metadata.packages_distributions())
    return frozenset(names)


def _top_level_name(entry: os.DirEntry[str]) -> str | None:
    """The module name an import-path entry provides, if any."""
    name = entry.name
    if entry.is_dir(follow_symlinks=True):
        return name if name.isidentifier() else None
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            return name.split(".", 1)[0]
    return None


def check_tool_paths(paths: Sequence[Path]) -> None:
    """`SandboxViolation` (reason ``tool_path_shadows``) naming every module a tool path
    would shadow; a tool path that does not exist is not an error here."""
    protected = _protected_names()
    found: list[str] = []
    for path in paths:
        try:
            with os.scandir(path) as entries:
                for count, entry in enumerate(entries):
                    if count >= _MAX_ENTRIES:
                        break
                    name = _top_level_name(entry)
                    if name is not None and name in protected:
                        found.append(f"{path}/{entry.name}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise SandboxViolation(
                f"tool path {path} cannot be read: {exc.strerror}",
                operation="runner.tool_paths",
                reason="tool_path_unreadable",
                path=str(path),
            ) from None
    if found:
        raise SandboxViolation(
            f"tool path entries would shadow strongroom, the standard library or an installed "
            f"package: {', '.join(sorted(found)[:10])}; rename them",
            operation="runner.tool_paths",
            reason="tool_path_shadows",
            entries=sorted(found)[:100],
        )


def import_path_for(entrypoint: str, tool_paths: Sequence[Path]) -> list[str]:
    """The tool paths the sandbox adds to the import path: none for a built-in tool."""
    module = entrypoint.partition(":")[0]
    if module == BUILTIN_PACKAGE or module.startswith(BUILTIN_PACKAGE + "."):
        return []
    return [str(p.resolve()) for p in tool_paths]
