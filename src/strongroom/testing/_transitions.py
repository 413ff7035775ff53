"""Conformance: a run's state change (snapshot + run fields + log lines) in one transaction."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.models import Run, SnapshotRecord
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault


def _lines(step: str) -> list[dict[str, Any]]:
    return [
        {"event": "step.started", "phase": step, "message": f"step {step} started"},
        {"event": "step.completed", "phase": step, "message": f"step {step} completed"},
    ]


class TransitionTests(VaultFixtureContract):
    async def _state(self, vault: Vault, run: Run) -> tuple[int, int, int, list[str]]:
        """What a transition may change: snapshot revisions, run version, log length, and
        the log's messages."""
        history = await vault.snapshots.history(run.run_id)
        stored = await vault.runs.get(run.run_id)
        log = await vault.logs.read(run.run_id)
        return len(history), stored.version, len(log), [e.message for e in log]

    async def test_a_transition_stores_all_three_parts_together(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        done = await vault.transitions.record(
            run.run_id,
            state={"data": {"step": "a", "status": "completed"}},
            expected_revision=0,
            current=run,
            run_changes={"current_step": "a", "progress": {"steps_completed": 1}},
            log_lines=_lines("a"),
        )
        assert done.snapshot is not None
        assert done.snapshot.revision == 1
        assert done.run is not None
        assert done.run.version == run.version + 1
        assert [e.seq for e in done.log_entries] == [1, 2]
        loaded = await vault.snapshots.load(run.run_id)
        assert loaded.state.data == {"step": "a", "status": "completed"}
        stored = await vault.runs.get(run.run_id)
        assert stored == done.run
        assert stored.current_step == "a"
        assert stored.progress.steps_completed == 1
        assert await vault.logs.read(run.run_id) == done.log_entries
        # the next one continues every chain
        again = await vault.transitions.record(
            run.run_id,
            state={"data": {"step": "b"}},
            expected_revision=1,
            current=done.run,
            run_changes={"current_step": "b"},
            log_lines=_lines("b"),
        )
        assert again.snapshot is not None
        assert again.snapshot.revision == 2
        assert [e.seq for e in again.log_entries] == [3, 4]
        count, problems = await vault.logs.verify_run(run.run_id)
        assert (count, problems) == (4, [])

    async def test_each_part_is_optional(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        only_lines = await vault.transitions.record(run.run_id, log_lines=_lines("a"))
        assert only_lines.snapshot is None
        assert only_lines.run is None
        only_run = await vault.transitions.record(run.run_id, run_changes={"current_step": "a"})
        assert only_run.run is not None
        assert only_run.run.current_step == "a"
        assert only_run.snapshot is None
        assert only_run.log_entries == []
        assert await self._state(vault, run) == (
            0,
            run.version + 1,
            2,
            ["step a started", "step a completed"],
        )
        nothing = await vault.transitions.record(run.run_id)
        assert (nothing.snapshot, nothing.run, nothing.log_entries) == (None, None, [])

    async def test_a_stale_revision_writes_nothing(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.snapshots.save(run.run_id, {"data": {"v": 1}}, expected_revision=0)
        before = await self._state(vault, run)
        with pytest.raises(Conflict) as info:
            await vault.transitions.record(
                run.run_id,
                state={"data": {"v": 2}},
                expected_revision=0,
                run_changes={"current_step": "x"},
                log_lines=_lines("x"),
            )
        assert info.value.details["reason"] == "stale_revision"
        assert await self._state(vault, run) == before
        assert (await vault.snapshots.load(run.run_id)).state.data == {"v": 1}

    async def test_a_sealed_log_writes_nothing(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.logs.append(run.run_id, {"event": "one"})
        await vault.runs.start(run.run_id)
        await vault.runs.cancel(run.run_id)  # seals the log
        before = await self._state(vault, run)
        with pytest.raises(Conflict) as info:
            await vault.transitions.record(
                run.run_id,
                state={"data": {"v": 1}},
                expected_revision=0,
                run_changes={"current_step": "x"},
                log_lines=_lines("x"),
            )
        assert info.value.details["reason"] == "sealed"
        assert await self._state(vault, run) == before
        assert (await vault.runs.get(run.run_id)).current_step is None

    async def test_a_run_changed_meanwhile_is_reread_and_kept(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.update(run.run_id, purpose="changed by someone else")
        done = await vault.transitions.record(
            run.run_id,
            state={"data": {}},
            expected_revision=0,
            current=run,  # stale copy
            run_changes={"current_step": "a"},
        )
        assert done.run is not None
        assert done.run.version == run.version + 2
        stored = await vault.runs.get(run.run_id)
        assert stored.purpose == "changed by someone else"
        assert stored.current_step == "a"
        assert [s.revision for s in await vault.snapshots.history(run.run_id)] == [1]

    async def test_lines_appended_by_another_writer_are_chained_after(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.transitions.record(run.run_id, log_lines=_lines("a"))  # head cached
        other = Vault(vault.metadata, vault.blobs)  # another process on the same stores
        await other.logs.append(run.run_id, {"event": "elsewhere", "message": "other writer"})
        done = await vault.transitions.record(run.run_id, log_lines=_lines("b"))
        assert [e.seq for e in done.log_entries] == [4, 5]
        messages = (await self._state(vault, run))[3]
        assert messages[2:] == ["other writer", "step b started", "step b completed"]
        assert (await vault.logs.verify_run(run.run_id))[1] == []

    async def test_racing_transitions_of_one_revision_one_wins(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.snapshots.save(run.run_id, {"data": {}}, expected_revision=0)
        writers = [Vault(vault.metadata, vault.blobs) for _ in range(6)]
        results = await asyncio.gather(
            *(
                w.transitions.record(
                    run.run_id,
                    state={"data": {"w": i}},
                    expected_revision=1,
                    run_changes={"current_step": f"w{i}"},
                    log_lines=[{"event": "w", "message": f"writer {i}"}],
                )
                for i, w in enumerate(writers)
            ),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
        won = winners[0].snapshot
        assert won is not None
        data = (await vault.snapshots.load(run.run_id)).state.data
        # the snapshot, the run and the only log line are the same writer's
        stored = await vault.runs.get(run.run_id)
        assert stored.current_step == f"w{data['w']}"
        assert (await self._state(vault, run))[3] == [f"writer {data['w']}"]

    async def test_bad_input_is_refused_before_anything_is_written(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        before = await self._state(vault, run)
        with pytest.raises(ValidationError):  # not a descriptive field
            await vault.transitions.record(
                run.run_id, state={"data": {}}, expected_revision=0, run_changes={"status": "x"}
            )
        with pytest.raises(ValidationError):  # a bad log line
            await vault.transitions.record(
                run.run_id, state={"data": {}}, expected_revision=0, log_lines=[{"level": "x"}]
            )
        with pytest.raises(ValidationError):  # a snapshot without its revision
            await vault.transitions.record(run.run_id, state={"data": {}})
        with pytest.raises(ValidationError):  # not a run state
            await vault.transitions.record(run.run_id, state={"bogus": 1}, expected_revision=0)
        other = await self.new_run(vault)
        with pytest.raises(ValidationError):  # the store refuses parts of two runs
            await vault.metadata.record_transition(
                snapshot=SnapshotRecord(
                    run_id=run.run_id, revision=1, sha256="0" * 64, size_bytes=0
                ),
                run=other,
                expected_version=other.version,
            )
        assert await self._state(vault, run) == before
        assert await self._state(vault, other) == (0, other.version, 0, [])
        with pytest.raises(NotFound):
            await vault.transitions.record(
                str(uuid.uuid4()), state={"data": {}}, expected_revision=0
            )
        with pytest.raises(NotFound):
            await vault.transitions.record(str(uuid.uuid4()), run_changes={"current_step": "a"})
