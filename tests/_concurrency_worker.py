"""Worker process for tests/test_concurrency.py (a script, not collected by pytest).

    python tests/_concurrency_worker.py '{"mode": "mixed", "vault": URL, "blobs": URL, ...}'

``vault`` is a vault URL (a directory, ``postgresql://...``); ``blobs`` a separate blob store
URL or null for the vault's default.

Modes:
- ``mixed``: ``ops`` operations drawn at random (create run, transition, snapshot save with
  compare-and-set on an own or a shared run, small artifact put, log batch append, run index
  query, run update with compare-and-set on a shared run);
- ``race``: ``attempts`` snapshot saves on one shared run, each with the revision just read;
- ``open``: open a vault that may not exist yet (all workers race to create it), create a run;
- ``promote``: one compare-and-set move of a registry channel (``move``: a `ChannelMove` as
  JSON) from the digest every worker read; reports ``won`` or the losing error's code.

The worker prints ``ready`` when it is about to start and waits for a line on stdin, so the
parent can release every worker at once. It records every exception a call raises instead
of stopping, and prints one JSON report line at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from typing import Any

from strongroom.errors import Conflict, StrongroomError
from strongroom.models import ChannelMove, RunStatus
from strongroom.vault import Vault

PROJECT = "conc"
# Operations whose compare-and-set may lose a race against another process.
CAS_OPERATIONS = frozenset({"snapshot_shared", "update_shared"})
WEIGHTS = {
    "create_run": 12,
    "transition": 12,
    "snapshot_own": 10,
    "snapshot_shared": 10,
    "update_shared": 6,
    "artifact_put": 15,
    "log_append": 15,
    "list_runs": 10,
}


def wait_for_start() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def describe(op: str, exc: Exception) -> dict[str, Any]:
    return {
        "op": op,
        "type": type(exc).__name__,
        "code": exc.code if isinstance(exc, StrongroomError) else None,
        "message": str(exc)[:500],
        "details": exc.details if isinstance(exc, StrongroomError) else {},
    }


class MixedWorker:
    """Random operations; remembers what succeeded so the parent can check nothing was lost."""

    def __init__(self, vault: Vault, config: dict[str, Any]) -> None:
        self.vault = vault
        self.worker: int = config["worker"]
        self.rng = random.Random(config["seed"])
        self.shared: list[str] = config["shared_runs"]
        self.pending: list[str] = []
        self.running: list[str] = []
        self.completed: list[str] = []
        self.revisions: Counter[str] = Counter()  # own runs: snapshots saved
        self.log_lines: Counter[str] = Counter()  # any run: lines appended by this worker
        self.shared_snapshots: list[tuple[str, int, str]] = []
        self.shared_updates: Counter[str] = Counter()
        self.artifacts: dict[str, str] = {}
        self.audit_events = 0
        self.counts: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []

    async def run(self, ops: int) -> dict[str, Any]:
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        for _ in range(ops):
            op = self.rng.choices(names, weights)[0]
            if op in ("transition", "snapshot_own", "artifact_put") and not (
                self.pending or self.running
            ):
                op = "create_run"
            if op == "snapshot_own" and not self.running:
                op = "transition"
            self.counts[op] += 1
            try:
                await getattr(self, op)()
            except Exception as exc:
                self.errors.append(describe(op, exc))
        return {
            "worker": self.worker,
            "counts": self.counts,
            "errors": self.errors,
            "runs": {
                **dict.fromkeys(self.pending, "pending"),
                **dict.fromkeys(self.running, "running"),
                **dict.fromkeys(self.completed, "completed"),
            },
            "revisions": self.revisions,
            "log_lines": self.log_lines,
            "shared_snapshots": self.shared_snapshots,
            "shared_updates": self.shared_updates,
            "artifacts": self.artifacts,
            "audit_events": self.audit_events,
        }

    async def create_run(self) -> None:
        run = await self.vault.runs.create(project=PROJECT, actor=f"worker-{self.worker}")
        self.pending.append(run.run_id)
        self.audit_events += 1  # run.created

    async def transition(self) -> None:
        if self.pending:
            run_id = self.pending[0]
            await self.vault.runs.start(run_id)
            self.pending.remove(run_id)
            self.running.append(run_id)
        else:
            run_id = self.running[0]
            await self.vault.runs.complete(run_id)
            self.running.remove(run_id)
            self.completed.append(run_id)
            self.audit_events += 2  # log.sealed (even an empty log is sealed), run.ended

    async def snapshot_own(self) -> None:
        run_id = self.rng.choice(self.running)
        state = {"data": {"worker": self.worker, "revision": self.revisions[run_id] + 1}}
        await self.vault.snapshots.save(run_id, state, expected_revision=self.revisions[run_id])
        self.revisions[run_id] += 1

    async def snapshot_shared(self) -> None:
        run_id = self.rng.choice(self.shared)
        revision = await self.vault.snapshots.latest_revision(run_id)
        state = {"data": {"worker": self.worker, "read": revision}}
        record = await self.vault.snapshots.save(run_id, state, expected_revision=revision)
        self.shared_snapshots.append((run_id, record.revision, record.sha256))

    async def update_shared(self) -> None:
        run_id = self.rng.choice(self.shared)
        current = await self.vault.runs.get(run_id)
        await self.vault.runs.update(
            run_id,
            expected_version=current.version,
            progress={"steps_completed": current.progress.steps_completed + 1},
        )
        self.shared_updates[run_id] += 1

    async def artifact_put(self) -> None:
        run_id = self.rng.choice(self.pending + self.running)
        data = self.rng.randbytes(self.rng.randrange(0, 4096))
        meta = await self.vault.artifacts.put_bytes(run_id, data, tags=[f"w{self.worker}"])
        self.artifacts[meta.artifact_id] = meta.sha256

    async def log_append(self) -> None:
        if self.running and self.rng.random() < 0.7:
            run_id = self.rng.choice(self.running)
        else:
            run_id = self.rng.choice(self.shared)
        lines = [
            {"event": "conc.op", "message": f"worker {self.worker}", "data": {"n": n}}
            for n in range(self.rng.randrange(1, 9))
        ]
        await self.vault.logs.append_many(run_id, lines)
        self.log_lines[run_id] += len(lines)

    async def list_runs(self) -> None:
        page = await self.vault.runs.list(project=PROJECT, status=[RunStatus.RUNNING], limit=20)
        seen = [run.run_id for run in page.items]
        if page.next_cursor is not None:
            more = await self.vault.runs.list(
                project=PROJECT, status=[RunStatus.RUNNING], limit=20, cursor=page.next_cursor
            )
            seen += [run.run_id for run in more.items]
        if len(seen) != len(set(seen)):
            raise AssertionError(f"a run appeared on two pages: {seen}")


async def open_vault(config: dict[str, Any]) -> Vault:
    return await Vault.open(config["vault"], blobs_url=config.get("blobs"))


async def mixed(config: dict[str, Any]) -> dict[str, Any]:
    vault = await open_vault(config)
    try:
        wait_for_start()
        return await MixedWorker(vault, config).run(config["ops"])
    finally:
        await vault.close()


async def race(config: dict[str, Any]) -> dict[str, Any]:
    run_id: str = config["run_id"]
    wins: list[dict[str, Any]] = []
    conflicts = 0
    errors: list[dict[str, Any]] = []
    vault = await open_vault(config)
    try:
        wait_for_start()
        for attempt in range(config["attempts"]):
            try:
                revision = await vault.snapshots.latest_revision(run_id)
                state = {"data": {"worker": config["worker"], "attempt": attempt}}
                record = await vault.snapshots.save(run_id, state, expected_revision=revision)
            except Conflict:
                conflicts += 1
            except Exception as exc:
                errors.append(describe("race_save", exc))
            else:
                wins.append(
                    {
                        "attempt": attempt,
                        "read": revision,
                        "revision": record.revision,
                        "sha256": record.sha256,
                    }
                )
    finally:
        await vault.close()
    return {"worker": config["worker"], "wins": wins, "conflicts": conflicts, "errors": errors}


async def open_and_create(config: dict[str, Any]) -> dict[str, Any]:
    wait_for_start()
    errors: list[dict[str, Any]] = []
    run_id = None
    try:
        vault = await open_vault(config)
    except Exception as exc:
        errors.append(describe("open", exc))
    else:
        try:
            run_id = (await vault.runs.create(project=PROJECT)).run_id
        except Exception as exc:
            errors.append(describe("create_run", exc))
        finally:
            await vault.close()
    return {"worker": config["worker"], "run_id": run_id, "errors": errors}


async def promote(config: dict[str, Any]) -> dict[str, Any]:
    move = ChannelMove.model_validate(config["move"])
    errors: list[dict[str, Any]] = []
    outcome = None
    vault = await open_vault(config)
    try:
        wait_for_start()
        try:
            await vault.metadata.move_channel(move)
        except StrongroomError as exc:
            outcome = exc.code
            errors.append(describe("promote", exc))
        except Exception as exc:
            errors.append(describe("promote", exc))
        else:
            outcome = "won"
    finally:
        await vault.close()
    return {"worker": config["worker"], "outcome": outcome, "errors": errors}


MODES = {"mixed": mixed, "race": race, "open": open_and_create, "promote": promote}


def main(argv: list[str]) -> int:
    config: dict[str, Any] = json.loads(argv[1])
    report = asyncio.run(MODES[config["mode"]](config))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
