"""Where the example files are: ``examples/`` (a project, its tools and registry definitions).

A wheel ships them inside the package (``strongroom/demo/_examples``, see pyproject.toml), so
the demo and the conformance suite work from an installed strongroom; a source checkout (an
editable install) reads the repository's own ``examples/``.
"""

from __future__ import annotations

from pathlib import Path

from strongroom.errors import NotFound

__all__ = ["examples_dir"]

_HERE = Path(__file__).resolve().parent


def examples_dir() -> Path:
    """The examples folder: the wheel's copy, else the source checkout's (`NotFound` if
    neither is there, e.g. a wheel built without them)."""
    for candidate in (_HERE / "_examples", _HERE.parents[2] / "examples"):
        if (candidate / "registry").is_dir():
            return candidate
    raise NotFound(
        "the example files are not installed: reinstall strongroom from its wheel or run "
        "from a source checkout",
        operation="demo.examples",
        reason="no_examples",
    )
