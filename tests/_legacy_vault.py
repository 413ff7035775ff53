"""Builds tests/data/legacy_vault.tar.gz: a vault written before hashes were RFC 8785.

Run with strongroom at commit beccb27 (the last one hashing with CPython's sorted
``json.dumps``), after its ``strongroom demo`` filled ``./.strongroom``::

    git worktree add /tmp/prejcs beccb27
    cd /tmp/legacy-build && PYTHONPATH=/tmp/prejcs/src python -m strongroom.cli demo
    PYTHONPATH=/tmp/prejcs/src:/path/to/strongroom python -m tests._legacy_vault .strongroom

It adds what the two forms write differently, so a verify that only knew RFC 8785 would fail
on it: floats (``0.1``, ``1e21``, ``1.0``), an integer beyond 2**53 and a key above U+E000 in a
snapshot's state, log lines' data and an artifact's metadata.
tests/test_canonical_json.py opens a copy and checks that it verifies, old and new together.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from strongroom import Vault

ODD: dict[str, Any] = {
    "ratio": 0.1,
    "huge": 1e21,
    "whole": 1.0,
    "tiny": 1e-7,
    "big": 2**60,
    "\ue000key": "private use",
    "\U0001f600key": "emoji",
}


async def build(path: str) -> None:
    async with await Vault.open(path, create=False) as vault:
        run = await vault.runs.create(project="legacy", purpose="floats and big ints")
        await vault.snapshots.save(run.run_id, {"data": ODD}, expected_revision=0)
        await vault.logs.append_many(
            run.run_id, [{"event": "odd", "message": f"line {i}", "data": ODD} for i in range(3)]
        )
        await vault.artifacts.put_bytes(
            run.run_id, b"legacy bytes\n", name="legacy.txt", metadata=ODD
        )
        # The same without the big integer: one RFC 8785 can write, differently.
        floats = {k: v for k, v in ODD.items() if k != "big"}
        await vault.artifacts.put_bytes(run.run_id, b"floats\n", name="floats.txt", metadata=floats)


if __name__ == "__main__":
    asyncio.run(build(sys.argv[1]))
