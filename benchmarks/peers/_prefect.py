"""Prefect's side of the durable chain: a flow calling ``chain_steps`` tasks in a row, flow and
tasks with ``persist_result=True`` (each task's return value written to Prefect's local result
storage, ``PREFECT_HOME/storage``), against Prefect's default local setup: no
``PREFECT_API_URL``, so Prefect starts its temporary server (a subprocess) on a SQLite
database in ``PREFECT_HOME``. ``PREFECT_HOME`` is the work directory, so nothing is written
under ``~``. Default durability: neither the result files nor the server's SQLite database
(WAL) are fsynced by Prefect; task run states reach the server through its event stream.

Prefect is imported through ``importlib`` (not installed in the dev venv where mypy checks this
file); the decorators are applied as calls.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers._shared import PeerSizes, Result, chain_step

__all__ = ["chain", "configure"]


def configure(work: Path) -> None:
    """Point Prefect at ``work`` (before it is imported): its home, database and results."""
    home = work / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)  # the default: a temporary local server
    os.environ.pop("PREFECT_PROFILES_PATH", None)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def chain(work: Path, sizes: PeerSizes) -> Result:
    """Timed from calling the flow (which creates its flow run) to its return; a warm-up flow
    first starts the temporary server."""
    configure(work)
    prefect: Any = importlib.import_module("prefect")
    step: Callable[[int, dict[str, Any]], dict[str, Any]] = prefect.task(persist_result=True)(
        chain_step
    )

    def run_chain(steps: int) -> dict[str, Any]:
        value: dict[str, Any] = {"value": 0}
        for i in range(steps):
            value = step(i, value)
        return value

    flow: Callable[[int], dict[str, Any]] = prefect.flow(persist_result=True)(run_chain)
    flow(5)  # warm-up: starts the temporary server
    start = time.perf_counter()
    result = flow(sizes.chain_steps)
    seconds = time.perf_counter() - start
    if result["value"] != sizes.chain_steps:
        raise RuntimeError(f"Prefect chain returned {result!r}")
    return {"ms_per_step": seconds / sizes.chain_steps * 1e3, "steps": sizes.chain_steps}
