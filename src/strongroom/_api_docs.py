"""Builds the Python API reference (HTML, with pdoc) from the docstrings of strongroom's
public modules: ``python -m strongroom._api_docs OUT_DIR`` (``make api-docs``). Any pdoc
warning (an annotation that does not resolve, a name in ``__all__`` that does not exist) is an
error, so the reference cannot quietly rot; tests/test_api_reference.py builds it in CI.
pdoc is a dev dependency, imported only here."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Final

__all__ = ["PUBLIC_MODULES", "build", "main"]

PUBLIC_MODULES: Final = (
    "strongroom",
    "strongroom.vault",
    "strongroom.sync",
    "strongroom.sync_pipeline",
    "strongroom.pipeline",
    "strongroom.models",
    "strongroom.errors",
    "strongroom.ids",
    "strongroom.services",
    "strongroom.ports",
    "strongroom.adapters",
    "strongroom.integrity",
    "strongroom.secrets",
    "strongroom.execution",
    "strongroom.orchestrator",
    "strongroom.transfer",
    "strongroom.bundle",
    "strongroom.testing",
    "strongroom.integrations.rentl",
    "strongroom.integrations.mass_relay",
)
"""The modules the reference documents (what users import; private modules are left out)."""


def _materialise_lazy_exports(name: str) -> None:
    """Put a module's lazily imported exports (a module ``__getattr__``) into its namespace:
    pdoc reads ``__dict__``, and the reference should show them like any other export."""
    module = importlib.import_module(name)
    for export in getattr(module, "__all__", ()):
        if export not in vars(module):
            setattr(module, export, getattr(module, export))


def build(output: Path) -> list[Path]:
    """Write the reference into ``output``; the HTML pages written. Raises on any warning."""
    import pdoc

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in PUBLIC_MODULES:
            _materialise_lazy_exports(name)
        pdoc.pdoc(*PUBLIC_MODULES, output_directory=output)
    return sorted(output.rglob("*.html"))


def main() -> None:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "build/api")
    pages = build(output)
    print(f"wrote {len(pages)} pages to {output} (open {output / 'index.html'})")


if __name__ == "__main__":
    main()
