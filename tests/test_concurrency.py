"""Many processes on one vault: no caller ever sees "database is locked" (or any other storage
error), compare-and-set lets exactly one writer of a revision win, and nothing an operation
reported as done is lost.

Each test runs on every backend pair of `target`: the embedded vault (SQLite + local blobs) and
PostgreSQL records (+ local blobs), on a fresh database. Workers are real processes running
``_concurrency_worker.py``; they are released together after each has started, and report
every exception their calls raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.models import Channel, RunStatus
from strongroom.services.catalog import DEFAULT_NAMESPACES
from strongroom.testing._registry import example_move, publish_example
from strongroom.vault import Vault

WORKER = Path(__file__).with_name("_concurrency_worker.py")
PROJECT = "conc"  # the project the workers use
START_TIMEOUT = 120.0
# Operations whose compare-and-set may lose a race: Conflict is their documented answer.
CAS_OPERATIONS = frozenset({"snapshot_shared", "update_shared"})


@dataclass(frozen=True)
class Target:
    """The vault the workers share: its URL and, when not the URL's default, its blob store."""

    url: str
    blobs_url: str | None = None

    def config(self) -> dict[str, Any]:
        return {"vault": self.url, "blobs": self.blobs_url}

    async def open(self) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs_url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "postgresql":
        return Target(request.getfixturevalue("pg_url"), str(tmp_path / "blobs"))
    return Target(str(tmp_path / "vault"))  # does not exist yet


async def run_workers(configs: list[dict[str, Any]], time_limit: float) -> list[dict[str, Any]]:
    """Start one worker per config, release them together, return their reports."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            json.dumps(config),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for config in configs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdin is not None
            ready = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            if ready != b"ready\n":
                _, stderr = await process.communicate()
                raise AssertionError(f"worker did not start: {ready!r} {stderr.decode()}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")  # communicate() below drains and closes stdin
        outputs = await asyncio.wait_for(
            asyncio.gather(*(process.communicate() for process in processes)), time_limit
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.communicate()
    reports = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        text = stderr.decode(errors="replace")
        assert process.returncode == 0, text
        assert "locked" not in text.lower(), text
        reports.append(json.loads(stdout))
    return reports


def unexpected_errors(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        error
        for report in reports
        for error in report["errors"]
        if not (error["type"] == "Conflict" and error["op"] in CAS_OPERATIONS)
    ]


@pytest.mark.slow
async def test_eight_processes_of_mixed_operations_lose_nothing_and_never_see_a_lock(
    target: Target,
) -> None:
    processes, operations = 8, 500
    async with await target.open() as vault:
        shared = [(await vault.runs.create(project=PROJECT)).run_id for _ in range(3)]
        for run_id in shared:
            await vault.runs.start(run_id)
        head = await vault.audit.head()
        audit_before = head.seq if head else 0

    started = time.monotonic()
    reports = await run_workers(
        [
            {
                "mode": "mixed",
                **target.config(),
                "worker": worker,
                "ops": operations,
                "seed": worker * 7919 + 1,
                "shared_runs": shared,
            }
            for worker in range(processes)
        ],
        time_limit=600,
    )
    elapsed = time.monotonic() - started

    # Every operation ran, and none failed except compare-and-set losers.
    counts: Counter[str] = Counter()
    for report in reports:
        assert sum(report["counts"].values()) == operations
        counts.update(report["counts"])
    assert unexpected_errors(reports) == []
    cas_losses = Counter(error["op"] for report in reports for error in report["errors"])
    print(f"{processes}x{operations} ops in {elapsed:.1f}s: {dict(counts)}; lost CAS {cas_losses}")

    async with await target.open() as vault:
        verified = await vault.verify()
        assert verified.ok, [problem.model_dump() for problem in verified.problems]

        # Shared runs: accepted snapshot writes have distinct, dense revisions; none lost.
        saved: dict[str, dict[int, str]] = {run_id: {} for run_id in shared}
        for worker_report in reports:
            for run_id, revision, sha256 in worker_report["shared_snapshots"]:
                assert revision not in saved[run_id], f"revision {revision} accepted twice"
                saved[run_id][revision] = sha256
        for run_id in shared:
            history = await vault.snapshots.history(run_id)
            assert {record.revision: record.sha256 for record in history} == saved[run_id]
            assert sorted(saved[run_id]) == list(range(1, len(history) + 1))

        # Shared runs: every accepted compare-and-set update counted once (created, started).
        updates: Counter[str] = Counter()
        shared_lines: Counter[str] = Counter()
        for worker_report in reports:
            updates.update(worker_report["shared_updates"])
            shared_lines.update(
                {k: v for k, v in worker_report["log_lines"].items() if k in shared}
            )
        for run_id in shared:
            run = await vault.runs.get(run_id)
            assert run.version == 2 + updates[run_id]
            assert run.progress.steps_completed == updates[run_id]
            assert (await vault.logs.reference(run_id)).entry_count == shared_lines[run_id]

        # Own runs: status, snapshot history and log length are what the worker saw succeed.
        created = 0
        for worker_report in reports:
            for run_id, status in worker_report["runs"].items():
                created += 1
                run = await vault.runs.get(run_id)
                assert run.status is RunStatus(status)
                history = await vault.snapshots.history(run_id)
                assert len(history) == worker_report["revisions"].get(run_id, 0)
                log = await vault.logs.reference(run_id)
                assert log.entry_count == worker_report["log_lines"].get(run_id, 0)
                assert log.sealed == (status == "completed")
            for artifact_id, sha256 in worker_report["artifacts"].items():
                assert (await vault.artifacts.get(artifact_id)).sha256 == sha256

        assert (await vault.runs.list(project=PROJECT, limit=1)).total == len(shared) + created
        head = await vault.audit.head()
        expected_audit = audit_before + sum(r["audit_events"] for r in reports)
        assert head is not None
        # Every write is audited now (and checkpoints and log heads add entries), so the
        # workers' count of governance events is a floor; what must hold exactly is that
        # every record is bound and every chain intact.
        assert head.seq >= expected_audit
        verified = await vault.verify()
        assert verified.ok, verified.problems[:5]


@pytest.mark.slow
async def test_processes_racing_on_one_snapshot_chain_each_win_a_distinct_revision(
    target: Target,
) -> None:
    processes, attempts = 6, 25
    async with await target.open() as vault:
        run_id = (await vault.runs.create(project=PROJECT)).run_id

    reports = await run_workers(
        [
            {
                "mode": "race",
                **target.config(),
                "worker": worker,
                "attempts": attempts,
                "run_id": run_id,
            }
            for worker in range(processes)
        ],
        time_limit=300,
    )

    assert unexpected_errors(reports) == []
    wins = [(report["worker"], win) for report in reports for win in report["wins"]]
    conflicts = sum(report["conflicts"] for report in reports)
    assert len(wins) + conflicts == processes * attempts  # every loser got Conflict
    assert conflicts > 0, "no save ever lost a race: the test did not create contention"
    revisions = sorted(win["revision"] for _, win in wins)
    assert revisions == list(range(1, len(wins) + 1))  # distinct and dense
    assert all(win["revision"] == win["read"] + 1 for _, win in wins)

    async with await target.open() as vault:
        history = await vault.snapshots.history(run_id)
        assert len(history) == len(wins)  # nothing lost, nothing extra
        by_revision = {record.revision: record for record in history}
        for worker, win in wins:
            assert by_revision[win["revision"]].sha256 == win["sha256"]
            state = (await vault.snapshots.load(run_id, win["revision"])).state
            assert state.data == {"worker": worker, "attempt": win["attempt"]}
        assert (await vault.verify()).ok


@pytest.mark.slow
async def test_processes_racing_to_create_a_vault_all_open_it(target: Target) -> None:
    processes = 8  # the vault (or the database's tables) does not exist: every worker races
    reports = await run_workers(
        [{"mode": "open", **target.config(), "worker": n} for n in range(processes)],
        time_limit=300,
    )

    assert unexpected_errors(reports) == []
    async with await target.open() as vault:
        assert (await vault.runs.list(project=PROJECT)).total == processes
        assert [provider.provider_id for provider in await vault.catalog.providers()] == ["default"]
        namespaces = [namespace.namespace_id for namespace in await vault.catalog.namespaces()]
        assert sorted(namespaces) == sorted(DEFAULT_NAMESPACES)
        report = await vault.verify()
        assert report.ok, [problem.model_dump() for problem in report.problems]


async def test_processes_promoting_one_channel_at_once_one_wins_the_others_are_stale(
    target: Target,
) -> None:
    processes = 4
    async with await target.open() as vault:
        base = await publish_example(vault, "raced-policy", "1.0.0", memory_mb=128)
        await vault.metadata.move_channel(example_move(base, Channel.PRODUCTION, None))
        candidates = [
            await publish_example(vault, "raced-policy", f"2.0.{n}", memory_mb=256 + n)
            for n in range(processes)
        ]
    moves = [example_move(c, Channel.PRODUCTION, base.digest) for c in candidates]

    reports = await run_workers(
        [
            {
                "mode": "promote",
                **target.config(),
                "worker": n,
                "move": moves[n].model_dump(mode="json"),
            }
            for n in range(processes)
        ],
        time_limit=120,
    )

    outcomes = Counter(report["outcome"] for report in reports)
    assert outcomes == {"won": 1, "stale_channel": processes - 1}, reports
    (winner,) = [report["worker"] for report in reports if report["outcome"] == "won"]
    for report in reports:
        for error in report["errors"]:
            assert error["details"]["current_digest"] == moves[winner].to_digest
    async with await target.open() as vault:
        channels = await vault.metadata.get_channels(base.kind, "raced-policy")
        assert channels[Channel.PRODUCTION] == moves[winner]
        history = await vault.metadata.list_channel_moves(base.kind, "raced-policy")
        assert [m.to_digest for m in history] == [base.digest, moves[winner].to_digest]
