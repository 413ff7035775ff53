"""The layout keeps its promises (docs/architecture.md): the layers are import-linter's
contract (``lint-imports`` in ``make test``, configured in pyproject.toml); here, that no module
imports another package's private module.

A name segment starting with ``_`` (after ``strongroom``) is private to the package holding
it: ``strongroom.services._common`` may be imported by ``strongroom.services.*`` only, and
``strongroom._fs`` by all of strongroom (its package is the root).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import strongroom

SRC = Path(strongroom.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of every strongroom import, names of ``from X import name`` too."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("strongroom.")]


def _owner(name: str) -> str | None:
    """The package a private name belongs to (None: nothing private in it): the package
    holding the private module, or holding the module that defines a private name."""
    parts = name.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            holder = parts[:i]
            if not SRC.parent.joinpath(*holder).is_dir():  # a module's private name
                holder = holder[:-1]
            return ".".join(holder)
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    broken: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # Alembic loads revisions by file, nothing imports them
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, name in _imported(tree, module, path.name == "__init__.py"):
            owner = _owner(name)
            if owner is not None and not (module == owner or module.startswith(owner + ".")):
                broken.append(f"{module} (line {line}) imports {name}, private to {owner}")
    assert broken == [], "\n".join(broken)


def test_the_rule_sees_a_private_import() -> None:
    """The checker itself: it finds what it must find and passes what it must pass."""
    tree = ast.parse(
        "from strongroom.services._common import parse\n"
        "from strongroom.cli import _output\n"
        "from ._x import y\n"
        "import strongroom._fs\n"
        "from strongroom.execution.runner import _Invocation\n"
    )
    names = [n for _, n in _imported(tree, "strongroom.execution.runner", False)]
    assert names == [
        "strongroom.services._common.parse",
        "strongroom.cli._output",
        "strongroom.execution._x.y",
        "strongroom._fs",
        "strongroom.execution.runner._Invocation",
    ]
    assert [_owner(n) for n in names] == [
        "strongroom.services",
        "strongroom.cli",
        "strongroom.execution",
        "strongroom",
        "strongroom.execution",
    ]


def test_the_pytest_plugin_imports_nothing_heavy() -> None:
    """Every pytest run of a project that has strongroom installed loads the plugin: it must
    not import the storage stack, the suites or pytest-asyncio."""
    probe = (
        "import sys, strongroom.pytest_plugin; "
        "heavy = [m for m in sys.modules if m.startswith(('strongroom.vault', "
        "'strongroom.testing', 'strongroom.adapters', 'sqlalchemy', 'pytest_asyncio'))]; "
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_every_top_level_module_is_in_a_layer() -> None:
    """The import-linter contract checks only the modules it lists: a new package left out
    would go unchecked."""
    config = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    listed = {
        name.strip() for layer in contract["layers"] for name in layer.replace(":", "|").split("|")
    }
    top = {
        f"strongroom.{p.stem if p.is_file() else p.name}"
        for p in SRC.iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p.is_dir() and (p / "__init__.py").is_file())
    }
    assert top - listed == set(), f"not in any layer of the contract: {sorted(top - listed)}"
