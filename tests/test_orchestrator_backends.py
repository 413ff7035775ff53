"""The orchestrator on every backend pair besides the embedded one (tests/test_orchestrator.py):
PostgreSQL + local blobs, SQLite + S3 (moto), PostgreSQL + S3. Each runs the diamond playbook
end to end and the approval pause/resume scenario, and a smaller kill test
(tests/test_orchestrator_kill.py's campaign with BACKEND_KILLS SIGKILLs per pair)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _lane import Lane, manifest, open_lane, policy, require_sandbox
from test_orchestrator import TOOLS, check_approval_pause_and_resume, check_diamond
from test_orchestrator_kill import KillTarget, kill_campaign

BACKEND_KILLS = 10


def _blobs(request: pytest.FixtureRequest, tmp_path: Path, s3: bool) -> str:
    if s3:
        url = request.getfixturevalue("s3_blob_url")
        assert isinstance(url, str)
        return url
    return str(tmp_path / "blobs")


def _records(request: pytest.FixtureRequest, tmp_path: Path, postgres: bool) -> str:
    if postgres:
        url = request.getfixturevalue("pg_url")
        assert isinstance(url, str)
        return url
    return str(tmp_path / "vault")


PAIRS = [
    pytest.param((True, False), id="postgres-local", marks=pytest.mark.postgres),
    pytest.param((False, True), id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param((True, True), id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]


@pytest.fixture(params=PAIRS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    postgres, s3 = request.param
    return _records(request, tmp_path, postgres), _blobs(request, tmp_path, s3)


@pytest.fixture
async def lane(urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    url, blobs_url = urls
    lane = await open_lane(tmp_path / "lane", url=url, blobs_url=blobs_url)
    await lane.publish(policy(), manifest(TOOLS))
    try:
        yield lane
    finally:
        await lane.vault.close()


async def test_diamond_runs_end_to_end(lane: Lane) -> None:
    await check_diamond(lane)


async def test_approval_pauses_and_resume_continues(lane: Lane) -> None:
    await check_approval_pause_and_resume(lane)


@pytest.mark.slow
async def test_killed_orchestrator_resumes(urls: tuple[str, str], tmp_path: Path) -> None:
    require_sandbox()
    url, blobs_url = urls
    target = KillTarget(url, blobs_url, tmp_path / "work")
    campaign = await kill_campaign(target, BACKEND_KILLS, tmp_path / "workers.stderr")
    assert campaign.kills >= BACKEND_KILLS
