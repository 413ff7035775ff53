"""The typed sync API: `SyncVault` wraps every service of `Vault`, ``sync.pyi`` (generated
from the async services) types every wrapped method, and a user's program checked with
``mypy --strict`` sees those types: a wrong one is an error, not Any."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from strongroom import SyncVault
from strongroom._sync_stub import STUB_PATH, render
from strongroom.ids import new_id
from strongroom.models import Run, RunStatus
from strongroom.sync import SYNC_ASYNC_ONLY, SYNC_SERVICES

HINT = "sync.pyi is out of date: run `make sync-stub` and commit src/strongroom/sync.pyi"


def test_the_checked_in_stub_is_what_the_services_render() -> None:
    assert STUB_PATH.read_text(encoding="utf-8") == render(), HINT


def _stub_methods() -> dict[str, set[str]]:
    """Class name -> the method names sync.pyi declares for it."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in STUB_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith("class "):
            current = line.removeprefix("class ").split(":")[0].split("(")[0]
            found[current] = set()
        elif line.startswith("    def ") and current:
            found[current].add(line.removeprefix("    def ").split("(")[0])
    return found


def test_every_public_service_method_is_typed_and_offered(tmp_path: Path) -> None:
    declared = _stub_methods()
    with SyncVault.open(tmp_path / "vault") as sync:
        for name in SYNC_SERVICES:
            service = getattr(sync.vault, name)
            public = {
                n
                for n in dir(service)
                if not n.startswith("_")
                and callable(getattr(service, n))
                and not inspect.isclass(getattr(service, n))
            } - SYNC_ASYNC_ONLY
            stub = declared[f"Sync{type(service).__name__}"]
            assert stub == public, (name, sorted(stub ^ public))
            for method in stub:
                assert callable(getattr(getattr(sync, name), method)), (name, method)


def test_sync_calls_return_results_not_awaitables(tmp_path: Path) -> None:
    with SyncVault.open(tmp_path / "vault") as vault:
        run = vault.runs.create(project="sync", purpose="typed")
        assert isinstance(run, Run)
        started = vault.runs.start(run.run_id)
        assert started.status is RunStatus.RUNNING
        vault.logs.append(run.run_id, {"event": "step", "message": "one"})
        assert [e.message for e in vault.logs.read(run.run_id)] == ["one"]
        assert vault.registry.list() == []
        assert vault.verify().ok
        with pytest.raises(AttributeError, match="async-only"):
            getattr(vault.artifacts, "stream")  # noqa: B009 (not in the stub, on purpose)


_PROGRAM = """
from __future__ import annotations

import asyncio
import sys

from pydantic import BaseModel

from strongroom import SyncVault, Vault
from strongroom.models import Run, RunPage, RunStatus
from strongroom.sync_pipeline import SyncPipelineRun


def with_sync(path: str) -> list[str]:
    with SyncVault.open(path) as vault:
        run: Run = vault.runs.create(project="typed", purpose="checked")
        vault.runs.start(run.run_id)
        page: RunPage = vault.runs.list(status=[RunStatus.RUNNING], limit=5)
        seq: int = vault.logs.append(run.run_id, {"event": "x", "message": "m"}).seq
        lines = vault.logs.read(run.run_id)
        return [r.run_id for r in page.items] + [str(seq), lines[0].message]


class Row(BaseModel):
    id: int


def with_sync_pipeline(path: str) -> list[Row]:
    with SyncVault.open(path) as vault:
        with SyncPipelineRun.open(vault, project="typed", key="k") as run:
            if not run.completed("rows"):
                with run.phase("rows") as phase:
                    phase.output([Row(id=1), Row(id=2)])
            rows: list[Row] = run.output("rows", list[Row])
            return rows


async def with_async(path: str) -> Run:
    async with await Vault.open(path) as vault:
        return await vault.runs.create(project="typed")


if __name__ == "__main__":
    print(with_sync(sys.argv[1]))
    print(asyncio.run(with_async(sys.argv[1])).run_id)
    print([row.id for row in with_sync_pipeline(sys.argv[1])])
"""

_WRONG = """
from strongroom import SyncVault

with SyncVault.open("v") as vault:
    count: int = vault.runs.create(project="typed")
    vault.registry.no_such_method()
    vault.logs.append(1, 2, 3, 4)
"""


@pytest.mark.slow
def test_mypy_strict_sees_every_annotation_of_a_users_program(tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text(textwrap.dedent(_PROGRAM))
    (tmp_path / "wrong.py").write_text(textwrap.dedent(_WRONG))
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "program.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "wrong.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert wrong.returncode == 1, wrong.stdout
    assert 'has type "Run", variable has type "int"' in wrong.stdout
    assert '"SyncRegistryService" has no attribute "no_such_method"' in wrong.stdout
    assert "wrong.py:7: error" in wrong.stdout  # four positional arguments to append
    ran = subprocess.run(
        [sys.executable, "program.py", str(tmp_path / "vault")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "'m'" in ran.stdout
    assert "[1, 2]" in ran.stdout


def test_query_arguments_take_a_model_a_mapping_or_keywords(tmp_path: Path) -> None:
    from strongroom.errors import ValidationError
    from strongroom.models import LogQuery

    with SyncVault.open(tmp_path / "vault") as vault:
        run = vault.runs.create(project="q")
        for i in range(3):
            vault.logs.append(run.run_id, {"event": "e", "message": str(i)})
        as_model = vault.logs.read(run.run_id, LogQuery(limit=2))
        as_mapping = vault.logs.read(run.run_id, {"limit": 2})
        as_keywords = vault.logs.read(run.run_id, limit=2)
        assert as_model == as_mapping == as_keywords
        assert len(as_model) == 2
        assert vault.runs.list({"project": "q"}).items == [run]
        assert vault.artifacts.list({"run_id": run.run_id}) == []
        for bad in (
            lambda: vault.logs.read(run.run_id, 5),  # type: ignore[arg-type]
            lambda: vault.logs.read(run.run_id, {"limit": 2}, limit=3),
            lambda: vault.runs.list(["q"]),  # type: ignore[arg-type]
            lambda: vault.logs.read(None),  # type: ignore[arg-type]
            lambda: vault.runs.get(42),  # type: ignore[arg-type]
        ):
            with pytest.raises(ValidationError) as caught:
                bad()
            assert caught.value.code == "validation_error"


class Row(BaseModel):
    id: int
    name: str


def test_a_sync_pipeline_runs_phases_keys_and_typed_outputs(tmp_path: Path) -> None:
    from strongroom.sync_pipeline import SyncPipelineRun

    rows = [Row(id=i, name=f"row {i}") for i in range(3)]
    with SyncVault.open(tmp_path / "vault") as vault:
        with SyncPipelineRun.open(vault, project="sync", key="nightly-1") as run:
            with run.phase("ingest") as phase:
                phase.output(rows)
                phase.state["cursor"] = 3
            back: list[Row] = run.output("ingest", list[Row])
            assert back == rows
            first = run.run_id
        with SyncPipelineRun.open(vault, project="sync", key="nightly-1") as again:
            assert again.finished
            assert again.run_id == first
            assert again.completed("ingest")
            assert again.data == {"cursor": 3}

        def fails() -> None:
            with (
                SyncPipelineRun.open(vault, project="sync") as failing,
                failing.phase("boom"),
            ):
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fails()
        (failed,) = vault.runs.list(status=[RunStatus.FAILED]).items
        assert failed.project == "sync"


@pytest.mark.slow
def test_the_sync_tool_runner_runs_a_tool_in_the_sandbox(tmp_path: Path) -> None:
    import json

    from _lane import TOOLS_DIR, manifest, policy, require_sandbox, tool
    from strongroom.execution import RunnerOptions
    from strongroom.sync_pipeline import SyncToolRunner
    from strongroom.testing.keys import approver

    require_sandbox()
    (tmp_path / "work" / "in").mkdir(parents=True)
    (tmp_path / "work" / "out").mkdir()
    with SyncVault.open(tmp_path / "vault") as vault:
        key = vault.run_sync(approver(vault.vault, "alice"))
        for n, definition in enumerate(
            (policy(), manifest([tool("echo", "lane_tools:echo", level="A0")]))
        ):
            raw = json.dumps(definition).encode()
            vault.registry.publish(raw, file_name=f"def{n}.yaml", signer=key)
        runner = SyncToolRunner(
            vault, RunnerOptions(workdir=tmp_path / "work", tool_paths=(TOOLS_DIR,))
        )
        request = {"request_id": new_id(), "tool_id": "echo", "input": {"text": "hi"}}
        response = runner.run(request)
        assert response.ok, response.error
        assert response.output["text"] == "hi"
        assert "seccomp" in response.layers
