"""verify's audit walk in a second process (`strongroom._audit_worker`): the report must be the
same as walking in verify's own process, on SQLite and PostgreSQL, tampered or not; a worker
that cannot start or dies is walked around (verify still answers, the same); a hostile
``strongroom`` folder in the working directory is never what the worker imports."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import strongroom._audit_worker as worker
from _tamper_vault import Populated, edit_body, populate
from strongroom.integrity import SigningKey
from strongroom.models import VerifyReport


def _summary(report: VerifyReport) -> tuple[list[tuple[str, str, str, str]], dict[str, int]]:
    problems = [(p.kind, p.code, p.subject, p.message) for p in report.problems]
    return problems, report.checked


async def _both(p: Populated, **kwargs: Any) -> tuple[VerifyReport, VerifyReport]:
    heads = await p.heads()
    async with await p.open(anchor=False, bootstrap=False) as vault:
        here = await vault.verify(anchors=heads, parallel=False, **kwargs)
        there = await vault.verify(anchors=heads, parallel=True, **kwargs)
    return here, there


def _tamper(p: Populated) -> None:
    """Damage that only the audit walk sees, and a registry move it must hand on."""
    with p.sql() as conn:
        edit_body(conn, "audit_entries", "seq = 3", actor="mallory")
        conn.execute(sa.text("DELETE FROM audit_bindings WHERE seq = 5"))
        conn.execute(
            sa.text(f"DELETE FROM audit_checkpoints WHERE tree_size = {p.audit_head - 10}")
        )
        (draft,) = conn.execute(
            sa.text("SELECT move_id FROM channel_pointers WHERE channel = 'draft'")
        ).one()
        conn.execute(
            sa.text(f"UPDATE channel_pointers SET move_id = '{draft}' WHERE channel = 'staging'")
        )


async def _check_same(p: Populated, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="strongroom")
    here, there = await _both(p)
    assert here.ok
    assert _summary(there) == _summary(here)
    _tamper(p)
    here, there = await _both(p)
    kinds = {problem.kind for problem in here.problems}
    assert {"audit_chain", "registry"} <= kinds, here.problems
    assert _summary(there) == _summary(here)
    assert "audit worker failed" not in caplog.text  # the worker did walk


async def test_the_worker_reports_what_walking_here_reports_on_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    await _check_same(p, caplog)


@pytest.mark.postgres
async def test_the_worker_reports_what_walking_here_reports_on_postgresql(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = SigningKey.generate()
    p = await populate(pg_url, tmp_path / "blobs", key, tmp_path / "a.jsonl")
    await _check_same(p, caplog)


async def test_stages_arrive_in_order_with_the_worker(tmp_path: Path) -> None:
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    seen: list[str] = []

    def progress(stage: str, done: int, total: int | None) -> None:
        if not seen or seen[-1] != stage:
            seen.append(stage)

    async with await p.open(anchor=False, bootstrap=False) as vault:
        report = await vault.verify(on_progress=progress, parallel=True)
    assert report.ok
    assert seen == ["blobs", "references", "records", "logs", "audit", "bindings", "registry"]


async def test_a_worker_that_cannot_run_is_walked_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    _tamper(p)
    expected, _ = await _both(p)
    for broken in ("/bin/false", str(tmp_path / "no-such-python")):
        monkeypatch.setattr(sys, "executable", broken)
        with caplog.at_level(logging.WARNING, logger="strongroom"):
            async with await p.open(anchor=False, bootstrap=False) as vault:
                report = await vault.verify(anchors=await p.heads(), parallel=True)
        assert _summary(report) == _summary(expected)
        assert "the audit worker failed" in caplog.text
        caplog.clear()


async def test_the_worker_refuses_another_strongroom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    monkeypatch.setattr(worker, "_package", lambda: str(tmp_path))
    with pytest.raises(worker.WorkerFailed, match="refusing to walk"):
        await worker.walk_in_child(p.url, [], None, lambda *_: None)


async def test_a_strongroom_folder_in_the_working_directory_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    hostile = tmp_path / "cwd" / "strongroom"
    hostile.mkdir(parents=True)
    marker = tmp_path / "imported"
    planted = f"open({str(marker)!r}, 'w').close()\n"
    (hostile / "__init__.py").write_text(planted)
    (hostile / "_audit_worker.py").write_text(planted)
    monkeypatch.chdir(hostile.parent)
    async with await p.open(anchor=False, bootstrap=False) as vault:
        report = await vault.verify(anchors=await p.heads(), parallel=True)
    assert report.ok, report.problems
    assert not marker.exists()


async def test_the_store_url_reaches_the_worker_on_stdin_not_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/architecture.md: the URL (which may hold a password) never appears in a process
    listing. The worker's argv is recorded as it is started, and must not hold it."""
    key = SigningKey.generate()
    p = await populate(str(tmp_path / "v"), tmp_path / "v" / "blobs", key, tmp_path / "a.jsonl")
    started: list[tuple[str, ...]] = []
    real = asyncio.create_subprocess_exec

    async def spy(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        started.append(tuple(str(a) for a in args))
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    async with await p.open(anchor=False, bootstrap=False) as vault:
        report = await vault.verify(anchors=await p.heads(), parallel=True)
    assert report.ok, report.problems
    assert len(started) == 1
    assert "strongroom._audit_worker" in started[0]
    assert not any(p.url in arg for arg in started[0])


@pytest.mark.parametrize(
    ("answer", "status", "why"),
    [
        ("not json\n", 0, "malformed answer"),
        ("[1, 2]\n", 0, "not an object"),
        ('{"progress": "half"}\n', 0, "malformed answer"),
        ('{"problem": {"kind": "audit"}}\n{"walk": {"entries": "many"}}\n', 0, "malformed"),
        ('{"progress": [1, 2]}\n', 0, "exit status 0"),  # no walk: not a whole answer
        ('{"progress": [1, 2]}\n', 3, "exit status 3"),
    ],
    ids=["not-json", "not-an-object", "bad-progress", "bad-walk", "no-walk", "failed"],
)
async def test_a_worker_answer_that_is_not_whole_and_well_formed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, status: int, why: str
) -> None:
    """Whatever a child prints (a broken build, a hostile interpreter on the path), the
    parent accepts only a whole answer of the documented shape, else `WorkerFailed` (and
    verify walks in its own process, as the test above shows)."""
    fake = tmp_path / "fake-python"
    (tmp_path / "answer").write_text(answer)
    fake.write_text(f"#!/bin/sh\ncat > /dev/null\ncat {tmp_path / 'answer'}\nexit {status}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(worker.WorkerFailed, match=why):
        await worker.walk_in_child("sqlite:///nowhere", [], None, lambda *_: None)
