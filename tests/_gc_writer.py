"""A writer process racing garbage collection, for tests/test_gc_crash.py (a script, not
collected by pytest).

    python tests/_gc_writer.py URL BLOBS_URL ACKS ROUNDS SEED

Each round makes one ended run, alternately in project ``victim`` (which the test's GC
deletes as soon as it sees it) and ``keep``: two artifacts, one of them bytes from a small
shared pool (``pool_bytes``: the test also stores every pool item as an unused blob, which
GC keeps reclaiming, so puts deduplicate against blobs being deleted), a snapshot and a log
line. After a run is complete it appends one JSON line to ACKS and fsyncs it: the run, its
project, and each artifact's id and sha256. Any error is printed and exits 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import traceback

from strongroom.vault import Vault

POOL = 12


def pool_bytes(index: int) -> bytes:
    return f"pool item {index} ".encode() * (50 + index)


async def main(url: str, blobs_url: str, acks: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    out = open(acks, "a", encoding="utf-8")  # noqa: ASYNC230, SIM115 - one small append file
    with out:
        async with await Vault.open(url, blobs_url=blobs_url, create=False) as vault:
            for n in range(rounds):
                project = "victim" if n % 2 == 0 else "keep"
                run = await vault.runs.create(project=project, actor=f"writer-{seed}")
                await vault.runs.start(run.run_id)
                shared = pool_bytes(rng.randrange(POOL))
                unique = os.urandom(200 + rng.randrange(2000))
                written = []
                for data, name in ((shared, "shared.bin"), (unique, "unique.bin")):
                    art = await vault.artifacts.put_bytes(run.run_id, data, name=name)
                    assert art.sha256 == hashlib.sha256(data).hexdigest()
                    written.append([art.artifact_id, art.sha256])
                await vault.snapshots.save(
                    run.run_id, {"data": {"round": n, "seed": seed}}, expected_revision=0
                )
                await vault.logs.append(run.run_id, {"event": "round", "message": f"round {n}"})
                await vault.runs.complete(run.run_id)
                out.write(
                    json.dumps({"run": run.run_id, "project": project, "artifacts": written}) + "\n"
                )
                out.flush()
                os.fsync(out.fileno())


if __name__ == "__main__":
    try:
        url, blobs_url, acks, rounds, seed = sys.argv[1:6]
        asyncio.run(main(url, blobs_url, acks, int(rounds), int(seed)))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
