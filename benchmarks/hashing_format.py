"""The cost of the hashing format alone: RFC 8785 (``canonical_json``) against the older
sorted ``json.dumps`` (``sorted_json``), in one process on one vault, batch by batch
alternating the two (patched into the modules that hash), so the machine's drift and the
disk hit both alike. Prints the median and best per-operation time of each and the cost.

    python -m benchmarks.hashing_format [--rounds 30] [--workdir DIR]

Not part of ``make bench``: it patches strongroom's internals, which the suite never does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import strongroom.models.canonical as canonical
import strongroom.models.chain as chain
from strongroom import Vault

_JCS: Callable[[Any], bytes] = canonical.canonical_json
_LINES = [
    {
        "event": "step.progress",
        "message": f"segment {i} done",
        "data": {"segment": i, "tokens": 412, "ms": 12.5 + i % 7, "ok": True},
    }
    for i in range(100)
]


def _use(jcs: bool) -> None:
    form = _JCS if jcs else canonical.sorted_json
    vars(canonical)["canonical_json"] = form  # record_json, the artifact metadata check
    vars(chain)["canonical_json"] = form  # audit entries; log lines go through chain_hash


async def _measure(path: Path, rounds: int) -> dict[tuple[str, bool], list[float]]:
    times: dict[tuple[str, bool], list[float]] = {}
    async with await Vault.open(path) as vault:
        run = await vault.runs.create(project="bench")
        for at in range(rounds):
            for jcs in (True, False) if at % 2 else (False, True):
                _use(jcs)
                start = time.perf_counter()
                for _ in range(10):
                    await vault.logs.append_many(run.run_id, _LINES)
                line = (time.perf_counter() - start) / (10 * len(_LINES))
                start = time.perf_counter()
                for _ in range(30):
                    await vault.runs.create(project="bench")
                create = (time.perf_counter() - start) / 30
                times.setdefault(("log line", jcs), []).append(line * 1e6)
                times.setdefault(("runs.create", jcs), []).append(create * 1e6)
    _use(True)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        times = asyncio.run(_measure(Path(tmp) / "vault", args.rounds))
    for what in ("log line", "runs.create"):
        jcs, old = times[(what, True)], times[(what, False)]
        median_cost = statistics.median(jcs) / statistics.median(old) - 1
        best_cost = min(jcs) / min(old) - 1
        print(
            f"{what}: RFC 8785 median {statistics.median(jcs):.1f} us, best {min(jcs):.1f} us; "
            f"sorted json.dumps median {statistics.median(old):.1f} us, best {min(old):.1f} us; "
            f"cost {median_cost:+.1%} (medians), {best_cost:+.1%} (best)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
