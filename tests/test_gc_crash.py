"""Garbage collection under fire, on real processes: writers racing `gc apply` on every backend
pair lose nothing; `gc apply` SIGKILLed again and again (each kill on progress, never after a
guessed delay) never leaves a record pointing at a missing blob, and a re-run finishes the job;
the temp files of killed `artifacts put` processes are reclaimed.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from _gc_writer import POOL, pool_bytes
from _pg_fixtures import create_database, drop_database, libpq_url
from strongroom.errors import NotFound
from strongroom.models import GcPlan, RetentionPolicy, RunStatus
from strongroom.vault import Vault

HERE = Path(__file__).parent
WRITER = HERE / "_gc_writer.py"
DEADLINE = 900.0  # seconds: generous, a loaded CI machine is slow; nothing waits this long
VICTIMS = RetentionPolicy.model_validate(
    {"rules": [{"project": "victim", "statuses": ["completed"], "keep_days": 0}]}
)


@dataclass
class Target:
    url: str
    blobs: str
    audit_head: Callable[[], int]  # read straight from the database (a probe, no Vault)

    async def open(self) -> Vault:
        return await Vault.open(self.url, blobs_url=self.blobs)


def _sqlite_head(path: Path) -> Callable[[], int]:
    def head() -> int:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
            return int(
                conn.execute("SELECT coalesce(max(seq), 0) FROM audit_entries").fetchone()[0]
            )

    return head


def _pg_head(url: str) -> Callable[[], int]:
    def head() -> int:
        with psycopg.connect(libpq_url(url)) as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_entries").fetchone()
            return int(row[0]) if row else 0

    return head


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("sqlite+s3", marks=pytest.mark.s3),
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param.startswith("sqlite"):
        vault_dir = tmp_path / "vault"
        blobs = str(vault_dir / "blobs")
        if request.param == "sqlite+s3":
            blobs = request.getfixturevalue("s3_blob_url")  # also puts creds in os.environ
        yield Target(str(vault_dir), blobs, _sqlite_head(vault_dir / "vault.db"))
        return
    request.getfixturevalue("pg_server")  # skip (or fail under CI) without a server
    url = create_database()
    try:
        if request.param == "postgresql":
            yield Target(url, str(tmp_path / "blobs"), _pg_head(url))
        else:
            s3_url: str = request.getfixturevalue("s3_blob_url")  # also puts creds in os.environ
            yield Target(url, s3_url, _pg_head(url))
    finally:
        drop_database(url)


async def _verify_clean(target: Target) -> Any:
    async with await target.open() as vault:
        report = await vault.verify(record=False)
    assert report.ok, [p.message for p in report.problems[:10]]
    return report


# -- writers racing GC --------------------------------------------------------------------------


def _start_writer(target: Target, tmp_path: Path, seed: int) -> tuple[Any, Path, Any]:
    acks = tmp_path / f"acks-{seed}.jsonl"
    stderr = open(tmp_path / f"writer-{seed}.err", "wb")  # noqa: SIM115 - closed by the test
    command = [sys.executable, str(WRITER), target.url, target.blobs, str(acks), "30", str(seed)]
    return subprocess.Popen(command, stderr=stderr), acks, stderr


async def test_writers_racing_gc_apply_lose_nothing(target: Target, tmp_path: Path) -> None:
    async with await target.open() as vault:
        for index in range(POOL):  # every pool item starts as an unused blob
            await vault.blobs.put_bytes(pool_bytes(index))
    writers = [_start_writer(target, tmp_path, seed) for seed in range(3)]
    deleted_runs = reclaimed = passes = 0
    deadline = time.monotonic() + DEADLINE
    async with await target.open() as vault:
        while any(p.poll() is None for p, _, _ in writers):
            assert time.monotonic() < deadline, "writers did not finish"
            plan = await vault.retention.plan(VICTIMS, grace_seconds=0)
            result = await vault.retention.apply(plan)
            deleted_runs += result.deleted.get("run", 0)
            reclaimed += result.deleted.get("blob", 0)
            passes += 1
    for _, _, stderr in writers:
        stderr.close()
    for seed, (process, _, _) in enumerate(writers):
        assert process.returncode == 0, (tmp_path / f"writer-{seed}.err").read_text()[-3000:]
    assert passes >= 2
    assert deleted_runs > 0  # the race was real: GC deleted runs and blobs meanwhile
    assert reclaimed > 0
    await _verify_clean(target)
    # Every acknowledged write of a kept run reads back whole; a victim run is either gone
    # entirely or intact.
    async with await target.open() as vault:
        for _, acks, _ in writers:
            for line in acks.read_text().splitlines():
                ack = json.loads(line)
                try:
                    run = await vault.runs.get(ack["run"])
                except NotFound:
                    assert ack["project"] == "victim", ack
                    continue
                assert run.status is RunStatus.COMPLETED
                for artifact_id, sha256 in ack["artifacts"]:
                    data = await vault.artifacts.get_bytes(artifact_id)
                    assert hashlib.sha256(data).hexdigest() == sha256


# -- SIGKILL during gc apply --------------------------------------------------------------------


def _cli(target: Target, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "strongroom",
        "--vault",
        target.url,
        "--blobs",
        target.blobs,
        *args,
    ]


def _local_blob_count(blobs_dir: Path) -> Callable[[], int]:
    def count() -> int:
        return sum(len(files) for _, _, files in os.walk(blobs_dir / "sha256"))

    return count


def _s3_blob_count(client: Any, blobs_url: str) -> Callable[[], int]:
    """Objects under the store's ``sha256/`` keys, listed behind its back (a probe)."""
    bucket, _, rest = blobs_url.removeprefix("s3://").partition("/")
    prefix = rest.split("?", 1)[0].strip("/") + "/sha256/"

    def count() -> int:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sum(len(page.get("Contents", [])) for page in pages)

    return count


def _kill_on_progress(
    command: list[str], target: Target, blob_count: Callable[[], int], log: Path
) -> bool:
    """Start ``command`` and SIGKILL it once the audit chain grew or a blob went (its first
    step of work); True if it was killed, False if it finished first."""
    head, blobs = target.audit_head(), blob_count()
    with open(log, "wb") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + DEADLINE
        try:
            while process.poll() is None:
                assert time.monotonic() < deadline, "gc apply made no progress"
                if target.audit_head() != head or blob_count() != blobs:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return True
                time.sleep(0.005)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
    return False


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("sqlite+s3", marks=pytest.mark.s3),
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ],
)
async def test_gc_apply_killed_twenty_times_leaves_nothing_dangling(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    blobs = str(tmp_path / "blobs")
    count = _local_blob_count(tmp_path / "blobs")
    if backend.endswith("+s3"):
        blobs = request.getfixturevalue("s3_blob_url")  # also puts creds in os.environ
        count = _s3_blob_count(request.getfixturevalue("s3_client"), blobs)
    url = None
    if backend.startswith("sqlite"):
        vault_dir = tmp_path / "vault"
        target = Target(str(vault_dir), blobs, _sqlite_head(vault_dir / "vault.db"))
    else:
        request.getfixturevalue("pg_server")
        url = create_database()
        target = Target(url, blobs, _pg_head(url))
    try:
        await _kill_gc_apply(target, count, tmp_path)
    finally:
        if url is not None:
            drop_database(url)


async def _victims(target: Target, rounds: int) -> GcPlan:
    """45 ended runs to delete (3 artifacts each) and 150 unused blobs; their plan."""
    async with await target.open() as vault:
        for n in range(45):
            run = await vault.runs.create(project="victim", actor="tester")
            await vault.runs.start(run.run_id)
            for k in range(3):
                await vault.artifacts.put_bytes(run.run_id, os.urandom(300 + k), name=f"{k}.bin")
            await vault.logs.append(run.run_id, {"event": "n", "message": f"{rounds}.{n}"})
            await vault.runs.complete(run.run_id)
        for _ in range(150):
            await vault.blobs.put_bytes(os.urandom(100))
        plan = await vault.retention.plan(VICTIMS, grace_seconds=0)
    assert plan.totals["run"] == 45
    return plan


async def _kill_gc_apply(target: Target, blob_count: Callable[[], int], tmp_path: Path) -> None:
    """SIGKILL `gc apply` on progress at least 20 times. How far an apply gets between two
    looks of the probe depends on the machine (and on S3 a look is a bucket listing), so when
    an apply finishes before the 20th kill, another batch of work is planned and killing goes
    on: the count of kills never depends on speed."""
    kills = rounds = 0
    plans: list[GcPlan] = []
    while kills < 20:
        plan = await _victims(target, rounds)
        plans.append(plan)
        plan_file = tmp_path / f"plan-{rounds}.json"
        plan_file.write_text(plan.model_dump_json())
        rounds += 1
        while kills < 20:
            command = _cli(target, "gc", "apply", str(plan_file))
            log = tmp_path / f"apply-{kills}.err"
            if not await asyncio.to_thread(_kill_on_progress, command, target, blob_count, log):
                break  # this plan is done: plan more work
            kills += 1
            # Records go before blobs: whatever the kill interrupted, nothing points at a
            # missing blob and every chain holds.
            await _verify_clean(target)
    # Re-run the last plan to the end, then plan again: what the kills left unused goes too.
    done = await asyncio.to_thread(
        subprocess.run, _cli(target, "gc", "apply", str(plan_file)), capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    async with await target.open() as vault:
        for plan in plans:
            for item in plan.items:
                if item.kind == "run":
                    with pytest.raises(NotFound):
                        await vault.runs.get(item.id)
        assert not await vault.metadata.list_blob_claims(state="claimed")
        again = await vault.retention.plan(None, grace_seconds=0)
        await vault.retention.apply(again)
    report = await _verify_clean(target)
    assert not [w for w in report.warnings if w.kind == "orphan_blobs"], report.warnings


# -- leftovers of killed puts -------------------------------------------------------------------


def test_temp_files_of_killed_puts_are_reclaimed(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    target = Target(str(vault_dir), str(vault_dir / "blobs"), _sqlite_head(vault_dir / "vault.db"))
    run_id = subprocess.run(
        _cli(target, "runs", "create", "-p", "puts"), capture_output=True, check=True, text=True
    ).stdout.strip()
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(1024 * 1024))
    tmp_dir = vault_dir / "blobs" / "tmp"

    def staged() -> int:
        try:
            return sum(entry.stat().st_size for entry in os.scandir(tmp_dir))
        except FileNotFoundError:
            return 0

    killed = 0
    for _ in range(5):
        before = staged()
        process = subprocess.Popen(
            _cli(target, "artifacts", "put", run_id, str(big), "--role", "custom"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE
        while process.poll() is None and staged() < before + 1024 * 1024:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        if process.poll() is None:  # mid-write: kill it
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed += 1
    assert killed >= 3
    assert staged() > 0
    # Staging younger than 15 minutes is a writer's: age them to 30 minutes (opening a store
    # sweeps temp files an hour old by itself).
    aged = time.time() - 1800
    for entry in os.scandir(tmp_dir):
        os.utime(entry.path, (aged, aged))
    check = subprocess.run(_cli(target, "verify", "--no-record", "--json"), capture_output=True)
    report = json.loads(check.stdout)
    assert report["ok"] is True
    assert [w["kind"] for w in report["warnings"]] == ["staging"]
    plan = subprocess.run(
        _cli(target, "gc", "plan", "--grace", "0", "--out", str(tmp_path / "p.json"), "--json"),
        capture_output=True,
        check=True,
    )
    items = json.loads(plan.stdout)["items"]
    assert {i["kind"] for i in items} == {"staging"}
    assert sum(i["bytes"] for i in items) == staged()
    subprocess.run(
        _cli(target, "gc", "apply", str(tmp_path / "p.json")), check=True, capture_output=True
    )
    assert staged() == 0
    after = json.loads(
        subprocess.run(_cli(target, "verify", "--no-record", "--json"), capture_output=True).stdout
    )
    assert after["ok"] is True
    assert after["warnings"] == []


def test_a_writer_holding_a_temp_file_keeps_it(tmp_path: Path) -> None:
    """A live writer's flock keeps its temp file out of the plan and out of apply."""
    vault_dir = tmp_path / "vault"
    target = Target(str(vault_dir), str(vault_dir / "blobs"), _sqlite_head(vault_dir / "vault.db"))
    subprocess.run(_cli(target, "init"), check=True, capture_output=True)
    tmp_dir = vault_dir / "blobs" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    live = tmp_dir / "live-writer.tmp"
    with open(live, "wb") as handle:
        handle.write(b"x" * 1000)
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        os.utime(live, (time.time() - 7200, time.time() - 7200))

        async def plan_and_apply() -> list[str]:
            async with await target.open() as vault:
                plan = await vault.retention.plan(None, grace_seconds=0)
                await vault.retention.apply(plan)
                return [i.id for i in plan.items if i.kind == "staging"]

        assert asyncio.run(plan_and_apply()) == []
        assert live.exists()
