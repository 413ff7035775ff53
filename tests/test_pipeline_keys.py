"""Idempotency keys (`PipelineRun.open(key=...)`): a restarted process finds its run by the
key alone, after a real SIGKILL; a completed key's run comes back as it is, running nothing;
a failed one is replaced by the key's next attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strongroom.errors import ValidationError
from strongroom.ids import key_run_id
from strongroom.models import RunStatus
from strongroom.pipeline import PipelineRun
from strongroom.vault import Vault

KEY = "nightly-2026-12-05"

SCRIPT = """
import asyncio
import json
import sys
from pathlib import Path

from strongroom.pipeline import PipelineRun
from strongroom.vault import Vault


async def main(url, key, journal, block):
    def note(event):
        with open(journal, "a") as out:
            out.write(event + "\\n")

    async with await Vault.open(url) as vault:
        async with PipelineRun.open(vault, project="keyed", key=key, steps_total=3) as run:
            note(f"open {run.run_id} finished={run.finished}")
            for name in ("ingest", "translate", "export"):
                if run.completed(name):
                    continue
                async with run.phase(name) as phase:
                    note(f"ran {name}")
                    if name == block:
                        Path(journal + ".blocked").write_text(run.run_id)
                        await asyncio.sleep(3600)  # the test SIGKILLs us here
                    await phase.output({"phase": name})
            note(f"done {run.run_id}")


if __name__ == "__main__":
    block = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], block))
"""


def _start(script: Path, url: str, journal: Path, block: str | None = None) -> int:
    """Run the script to its end (or, with ``block``, until the test kills it inside that
    phase); its exit code. Its output goes to journal.out."""
    args = [sys.executable, str(script), url, KEY, str(journal)] + ([block] if block else [])
    with (journal.parent / "journal.out").open("ab") as out:
        child = subprocess.Popen(args, stdout=out, stderr=out)
    try:
        if block is None:
            return child.wait(timeout=300)
        deadline = time.monotonic() + 120
        blocked = Path(str(journal) + ".blocked")
        while not blocked.exists():  # killed on observed progress, not after a delay
            assert child.poll() is None, (journal.parent / "journal.out").read_text()
            assert time.monotonic() < deadline, "the child never reached its blocking phase"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        return child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)


def _journal(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with await Vault.open(tmp_path / "v") as opened:
        yield opened


def test_a_killed_pipeline_restarted_with_its_key_resumes_and_a_finished_one_runs_nothing(
    tmp_path: Path,
) -> None:
    script = tmp_path / "keyed.py"
    script.write_text(SCRIPT)
    url = str(tmp_path / "v")
    journal = tmp_path / "journal.txt"
    assert _start(script, url, journal, block="translate") == -signal.SIGKILL
    run_id = Path(str(journal) + ".blocked").read_text()
    assert run_id == key_run_id("keyed", KEY)
    output = (tmp_path / "journal.out").read_text
    assert _start(script, url, journal) == 0, output()
    assert _start(script, url, journal) == 0, output()

    assert _journal(journal) == [
        f"open {run_id} finished=False",
        "ran ingest",
        "ran translate",  # killed here
        f"open {run_id} finished=False",  # the same run, found by its key
        "ran translate",  # ingest was not redone
        "ran export",
        f"done {run_id}",
        f"open {run_id} finished=True",  # completed: returned as it is
        f"done {run_id}",
    ]
    verified = subprocess.run(
        [sys.executable, "-m", "strongroom", "--vault", url, "verify", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"] is True


async def test_a_finished_keys_run_is_left_exactly_as_it_was(vault: Vault) -> None:
    async with (
        PipelineRun.open(vault, project="keyed", key=KEY) as run,
        run.phase("only") as phase,
    ):
        await phase.output(1)
    done = await vault.runs.get(run.run_id)
    lines = len(await vault.logs.read(run.run_id))
    async with PipelineRun.open(vault, project="keyed", key=KEY) as again:
        assert again.finished
        assert again.key == KEY
        assert again.run_id == run.run_id
        assert again.completed("only")
        assert await again.output("only") == 1
    assert await vault.runs.get(run.run_id) == done
    assert len(await vault.logs.read(run.run_id)) == lines


async def test_a_failed_keys_run_is_replaced_by_the_next_attempt(vault: Vault) -> None:
    async def fails_after_ingest() -> None:
        async with PipelineRun.open(vault, project="keyed", key=KEY) as first:
            async with first.phase("ingest") as phase:
                await phase.output("rows")
            raise RuntimeError("translator down")

    with pytest.raises(RuntimeError):
        await fails_after_ingest()
    first_id = key_run_id("keyed", KEY, 0)
    assert (await vault.runs.get(first_id)).status is RunStatus.FAILED
    async with PipelineRun.open(vault, project="keyed", key=KEY) as second:
        assert second.run_id == key_run_id("keyed", KEY, 1)
        assert second.previous_run_id == first_id
        assert second.completed("ingest")  # carried over, not redone
        async with second.phase("translate") as phase:
            await phase.output("done")
    async with PipelineRun.open(vault, project="keyed", key=KEY) as third:
        assert third.finished
        assert third.run_id == second.run_id
    async with PipelineRun.open(vault, project="other", key=KEY) as elsewhere:
        assert not elsewhere.finished  # a key belongs to its project
        assert elsewhere.run_id == key_run_id("other", KEY)


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there", "nul\0"])
async def test_bad_keys_and_a_key_with_a_run_id_are_refused(vault: Vault, key: str) -> None:
    with pytest.raises(ValidationError):
        async with PipelineRun.open(vault, project="keyed", key=key):
            pass
    with pytest.raises(ValidationError):
        PipelineRun.open(vault, project="keyed", key=KEY, run_id=key_run_id("keyed", KEY))
    assert (await vault.runs.list()).items == []
