"""One side of one workload in a process of its own: ``python -m benchmarks.peers._worker
REQUEST.json RESULT.json``. The runner starts one per (workload, side, repetition), so no
tool's imports, threads or servers are alive while another tool is measured, and a tool that
fails (not installed, say) fails only its own rows.

REQUEST.json: ``{"workload", "side", "work", "sizes", "files"}``; RESULT.json receives the
side's figures (`Result`). Only the modules of the side asked for are imported.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.peers._shared import PeerSizes, Result, queries

__all__ = ["SIDES", "run_side"]

# workload -> the sides that can run it ("setup" workloads prepare stores for later ones).
SIDES: dict[str, tuple[str, ...]] = {
    "runs": ("strongroom", "mlflow"),
    "artifacts": ("strongroom", "mlflow"),
    "chain": ("strongroom", "dbos", "prefect"),
    "large": ("strongroom", "cp", "hashlib"),
    "index-setup": ("strongroom", "mlflow"),
    "index": ("strongroom", "mlflow"),
    "cli-setup": ("strongroom", "mlflow"),
    "acceptance": ("strongroom",),
}


def _strongroom(workload: str, work: Path, sizes: PeerSizes, files: list[Path]) -> Result:
    from benchmarks.peers import _strongroom as sr

    if workload == "runs":
        return asyncio.run(sr.runs(work, sizes))
    if workload == "artifacts":
        return asyncio.run(sr.artifacts(work, sizes))
    if workload == "chain":
        return asyncio.run(sr.chain(work, sizes))
    if workload == "large":
        return asyncio.run(sr.large(work, sizes, files))
    if workload == "index-setup":
        return asyncio.run(sr.index_setup(work, sizes))
    if workload == "index":
        return asyncio.run(sr.index(work, sizes, queries(sizes.index_queries + 10)))
    if workload == "cli-setup":
        return asyncio.run(sr.cli_setup(work, sizes))
    if workload == "acceptance":
        return asyncio.run(sr.acceptance(work, sizes))
    raise ValueError(workload)


def _mlflow(workload: str, work: Path, sizes: PeerSizes) -> Result:
    from benchmarks.peers import _mlflow as ml

    if workload == "runs":
        return ml.runs(work, sizes)
    if workload == "artifacts":
        return ml.artifacts(work, sizes)
    if workload == "index-setup":
        return ml.index_setup(work, sizes)
    if workload == "index":
        return ml.index(work, sizes, queries(sizes.index_queries + 10))
    if workload == "cli-setup":
        return ml.cli_setup(work, sizes)
    raise ValueError(workload)


def run_side(workload: str, side: str, work: Path, sizes: PeerSizes, files: list[Path]) -> Result:
    if side not in SIDES.get(workload, ()):
        raise ValueError(f"no side {side!r} for workload {workload!r}")
    work.mkdir(parents=True, exist_ok=True)
    if side == "strongroom":
        return _strongroom(workload, work, sizes, files)
    if side == "mlflow":
        return _mlflow(workload, work, sizes)
    if side == "dbos":
        from benchmarks.peers import _dbos

        return _dbos.chain(work, sizes)
    if side == "prefect":
        from benchmarks.peers import _prefect

        return _prefect.chain(work, sizes)
    from benchmarks.peers import _files

    if side == "cp":
        return _files.shell_copy(work, files)
    return _files.hashlib_rate(work, files)


def main(argv: list[str]) -> int:
    request_path, result_path = (Path(arg) for arg in argv)
    request: dict[str, Any] = json.loads(request_path.read_text())
    result = run_side(
        request["workload"],
        request["side"],
        Path(request["work"]),
        PeerSizes.from_dict(request["sizes"]),
        [Path(p) for p in request.get("files", [])],
    )
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
