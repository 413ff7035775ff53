"""DBOS's side of the durable chain: a ``@DBOS.workflow`` calling ``chain_steps``
``@DBOS.step`` functions in a row, each step's output checkpointed in DBOS's system database,
here SQLite in the work directory (``sqlite:///WORK/dbos.sqlite``), with DBOS's default
durability: SQLite's rollback journal with ``synchronous=FULL`` (every step's checkpoint is a
fsynced commit) and ``IMMEDIATE`` transactions. No admin server, no Conductor.

DBOS is imported through ``importlib`` (not installed in the dev venv where mypy checks this
file); the decorators are applied as calls, so mypy sees no untyped decorator.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers._shared import PeerSizes, Result, chain_step

__all__ = ["chain"]


def chain(work: Path, sizes: PeerSizes) -> Result:
    """Timed from calling the workflow (which records its start) to its return."""
    dbos_class: Any = importlib.import_module("dbos").DBOS
    dbos_class(
        config={
            "name": "bench-peers",
            "system_database_url": f"sqlite:///{work / 'dbos.sqlite'}",
            "run_admin_server": False,
        }
    )
    step: Callable[[int, dict[str, Any]], dict[str, Any]] = dbos_class.step()(chain_step)

    def run_chain(steps: int) -> dict[str, Any]:
        value: dict[str, Any] = {"value": 0}
        for i in range(steps):
            value = step(i, value)
        return value

    workflow: Callable[[int], dict[str, Any]] = dbos_class.workflow()(run_chain)
    dbos_class.launch()
    try:
        workflow(5)  # warm-up
        start = time.perf_counter()
        result = workflow(sizes.chain_steps)
        seconds = time.perf_counter() - start
    finally:
        dbos_class.destroy()
    if result["value"] != sizes.chain_steps:
        raise RuntimeError(f"DBOS chain returned {result!r}")
    return {"ms_per_step": seconds / sizes.chain_steps * 1e3, "steps": sizes.chain_steps}
