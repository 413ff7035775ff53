"""Conformance: runs, the state machine, snapshots and the run index."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.models import RunQuery, RunState, RunStatus, sorted_json
from strongroom.testing._base import BAD_NAMES, VaultFixtureContract
from strongroom.vault import Vault


class RunTests(VaultFixtureContract):
    async def test_create_run_is_pending_with_uuid7_id(self, vault: Vault) -> None:
        run = await self.new_run(vault, purpose="translate the manual")
        assert uuid.UUID(run.run_id).version == 7
        assert run.status is RunStatus.PENDING
        stored = await vault.runs.get(run.run_id)
        assert stored == run

    async def test_run_ids_are_time_ordered(self, vault: Vault) -> None:
        ids = [(await self.new_run(vault)).run_id for _ in range(20)]
        assert ids == sorted(ids)

    @pytest.mark.parametrize("bad", BAD_NAMES)
    async def test_unsafe_project_name_is_refused_and_nothing_is_written(
        self, vault: Vault, bad: str
    ) -> None:
        with pytest.raises(ValidationError) as info:
            await vault.runs.create(project=bad, actor="tester")
        assert info.value.details["errors"][0]["path"] == "/project"
        assert (await vault.runs.list()).total == 0

    @pytest.mark.parametrize("bad", ["../x", "not-a-uuid", "a" * 36, "", "%2e%2e"])
    async def test_malformed_run_id_is_a_validation_error(self, vault: Vault, bad: str) -> None:
        with pytest.raises(ValidationError):
            await vault.runs.get(bad)

    async def test_unknown_run_is_not_found(self, vault: Vault) -> None:
        with pytest.raises(NotFound) as info:
            await vault.runs.get(str(uuid.uuid4()))
        assert info.value.code == "not_found"

    async def test_status_follows_the_state_machine(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        running = await vault.runs.start(run.run_id)
        assert running.status is RunStatus.RUNNING
        assert running.started_at is not None
        done = await vault.runs.complete(run.run_id)
        assert done.status is RunStatus.COMPLETED
        assert done.completed_at is not None
        assert done.outcome is not None
        assert done.version == run.version + 2

    @pytest.mark.parametrize(
        ("path", "illegal"),
        [
            ([], RunStatus.COMPLETED),
            ([RunStatus.RUNNING], RunStatus.PENDING),
            ([RunStatus.RUNNING, RunStatus.COMPLETED], RunStatus.RUNNING),
            ([RunStatus.CANCELLED], RunStatus.RUNNING),
            ([RunStatus.RUNNING, RunStatus.FAILED], RunStatus.COMPLETED),
        ],
    )
    async def test_illegal_transition_is_a_conflict_and_changes_nothing(
        self, vault: Vault, path: list[RunStatus], illegal: RunStatus
    ) -> None:
        run = await self.new_run(vault)
        for status in path:
            await vault.runs.transition(run.run_id, status)
        before = await vault.runs.get(run.run_id)
        with pytest.raises(Conflict) as info:
            await vault.runs.transition(run.run_id, illegal)
        assert info.value.details["reason"] == "illegal_transition"
        assert await vault.runs.get(run.run_id) == before

    async def test_transition_with_stale_version_is_a_conflict(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        with pytest.raises(Conflict):
            await vault.runs.complete(run.run_id, expected_version=run.version)

    async def test_failing_a_run_records_the_error(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        err = {"code": "timeout", "message": "step took too long", "details": {"step": "qa"}}
        failed = await vault.runs.fail(run.run_id, err)
        assert failed.last_error is not None
        assert failed.last_error.code == "timeout"
        assert failed.outcome is not None
        assert failed.outcome.value == "failure"

    async def test_update_changes_phase_and_progress(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        updated = await vault.runs.update(
            run.run_id, current_phase="ingest", progress={"steps_total": 4, "steps_completed": 1}
        )
        assert updated.current_phase == "ingest"
        assert updated.progress.steps_completed == 1
        with pytest.raises(ValidationError):
            await vault.runs.update(run.run_id, status="completed")
        with pytest.raises(Conflict):
            await vault.runs.update(run.run_id, expected_version=run.version, purpose="x")


class SnapshotTests(VaultFixtureContract):
    async def test_snapshot_round_trip_and_digest(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        state = RunState(data={"cursor": 41, "items": ["a", "b"]}, phase_revisions={"ingest": 2})
        record = await vault.snapshots.save(run.run_id, state, expected_revision=0)
        assert record.revision == 1
        payload = sorted_json(state.model_dump(mode="json"))
        assert record.sha256 == hashlib.sha256(payload).hexdigest()
        assert record.size_bytes == len(payload)
        loaded = await vault.snapshots.load(run.run_id)
        assert loaded.state == state
        assert loaded.record == record

    async def test_history_is_append_only_and_any_revision_loads(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        for rev in range(5):
            await vault.snapshots.save(run.run_id, {"data": {"n": rev}}, expected_revision=rev)
        history = await vault.snapshots.history(run.run_id)
        assert [s.revision for s in history] == [1, 2, 3, 4, 5]
        assert (await vault.snapshots.load(run.run_id, 3)).state.data == {"n": 2}
        assert (await vault.snapshots.load(run.run_id)).state.data == {"n": 4}

    async def test_stale_snapshot_writer_gets_conflict(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.snapshots.save(run.run_id, {"data": {"v": 1}}, expected_revision=0)
        with pytest.raises(Conflict) as info:
            await vault.snapshots.save(run.run_id, {"data": {"v": 2}}, expected_revision=0)
        assert info.value.details["reason"] == "stale_revision"
        assert (await vault.snapshots.load(run.run_id)).state.data == {"v": 1}

    async def test_concurrent_snapshot_writers_never_lose_a_revision(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        results = await asyncio.gather(
            *(
                vault.snapshots.save(run.run_id, {"data": {"w": i}}, expected_revision=0)
                for i in range(8)
            ),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
        assert [s.revision for s in await vault.snapshots.history(run.run_id)] == [1]

    async def test_snapshot_of_unknown_run_is_not_found(self, vault: Vault) -> None:
        with pytest.raises(NotFound):
            await vault.snapshots.save(str(uuid.uuid4()), {}, expected_revision=0)
        with pytest.raises(NotFound):
            await vault.snapshots.load(str(uuid.uuid4()))

    async def test_bad_snapshot_state_is_a_validation_error(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        with pytest.raises(ValidationError):
            await vault.snapshots.save(run.run_id, {"unknown_key": 1}, expected_revision=0)
        with pytest.raises(ValidationError):
            await vault.snapshots.save(run.run_id, {}, expected_revision=-1)
        assert await vault.snapshots.history(run.run_id) == []

    async def test_corrupted_snapshot_blob_fails_to_load(self, vault: Vault) -> None:
        from strongroom.errors import IntegrityError

        run = await self.new_run(vault)
        record = await vault.snapshots.save(run.run_id, {"data": {"k": 1}}, expected_revision=0)
        await self.corrupt_blob(vault, record.sha256)
        with pytest.raises(IntegrityError):
            await vault.snapshots.load(run.run_id)


class RunIndexTests(VaultFixtureContract):
    async def _populate(self, vault: Vault) -> None:
        for i in range(30):
            run = await vault.runs.create(
                project="alpha" if i % 2 else "beta",
                actor="ana" if i % 3 else "bob",
                purpose=f"batch {i} of 100% done_ok" if i % 5 == 0 else f"batch {i}",
                playbook={"playbook_id": "translate" if i % 4 == 0 else "qa"},
            )
            if i % 3 == 0:
                await vault.runs.start(run.run_id)

    async def test_filters_combine(self, vault: Vault) -> None:
        await self._populate(vault)
        page = await vault.runs.list(status=["running"], project="beta")
        assert page.total == len(page.items) > 0
        assert all(r.status is RunStatus.RUNNING and r.project == "beta" for r in page.items)
        by_actor = await vault.runs.list(actor="bob")
        assert by_actor.total == 10
        by_playbook = await vault.runs.list(playbook_id="translate")
        assert by_playbook.total == 8

    async def test_successors_are_found_by_their_previous_run(self, vault: Vault) -> None:
        first = await vault.runs.create(project="chain")
        later = [
            await vault.runs.create(project="chain", previous_run_id=first.run_id) for _ in range(3)
        ]
        other = await vault.runs.create(project="chain")
        await vault.runs.create(project="chain", previous_run_id=other.run_id)
        page = await vault.runs.list(previous_run_id=first.run_id, descending=False)
        assert [r.run_id for r in page.items] == [r.run_id for r in later]
        assert page.total == 3
        # The link survives later writes of the successor (a status change rewrites the row).
        await vault.runs.start(later[0].run_id)
        again = await vault.runs.list(previous_run_id=first.run_id, status=["running"])
        assert [r.run_id for r in again.items] == [later[0].run_id]
        assert (await vault.runs.list(previous_run_id=later[0].run_id)).total == 0

    async def test_counts_by_status_match_the_listed_runs(self, vault: Vault) -> None:
        await self._populate(vault)
        for i, run_id in enumerate((await vault.runs.list(limit=1000)).items):
            if i % 4 == 0:
                await vault.runs.set_labels(run_id.run_id, {"team": "red" if i % 8 else "blue"})
        cases: list[dict[str, Any]] = [
            {},
            {"project": "alpha"},
            {"actor": "bob", "status": ["pending"]},  # the status filter is set aside
            {"labels": {"team": "red"}},
            {"labels": {"team": "blue"}, "project": "beta"},
            {"purpose_contains": "100%"},
        ]
        for filters in cases:
            every = await vault.runs.list(
                {**filters, "status": None, "limit": 1000, "count_limit": None}
            )
            expected: dict[RunStatus, int] = {}
            for run in every.items:
                expected[run.status] = expected.get(run.status, 0) + 1
            counted = await vault.runs.count_by_status(filters)
            assert counted.counts == expected, filters
            assert counted.total == len(every.items)
            assert counted.exact
        capped = await vault.runs.count_by_status(count_limit=7)
        assert capped.total == 8
        assert not capped.exact
        capped_label = await vault.runs.count_by_status(labels={"team": "red"}, count_limit=2)
        assert capped_label.total == 3
        assert not capped_label.exact
        assert (await vault.runs.count_by_status(project="nobody")).counts == {}

    async def test_purpose_search_treats_wildcards_literally(self, vault: Vault) -> None:
        await self._populate(vault)
        assert (await vault.runs.list(purpose_contains="100%")).total == 6
        assert (await vault.runs.list(purpose_contains="done_ok")).total == 6
        # '_' and '%' would be wildcards in SQL LIKE; here they must match only themselves.
        assert (await vault.runs.list(purpose_contains="h_1")).total == 0
        assert (await vault.runs.list(purpose_contains="1%d")).total == 0
        assert (await vault.runs.list(purpose_contains="BATCH 1")).total == 11

    async def test_keyset_pagination_visits_every_run_once_in_order(self, vault: Vault) -> None:
        await self._populate(vault)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await vault.runs.list(RunQuery(project="alpha", limit=4, cursor=cursor))
            assert page.total == 15
            seen.extend(r.run_id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 15
        assert seen == sorted(seen, reverse=True)

    async def test_ascending_sort_and_time_range(self, vault: Vault) -> None:
        await self._populate(vault)
        page = await vault.runs.list(descending=False, limit=1000)
        created = [r.created_at for r in page.items]
        assert created == sorted(created)
        future = datetime.now(UTC) + timedelta(days=1)
        assert (await vault.runs.list(created_after=future)).total == 0
        assert (await vault.runs.list(created_before=future)).total == 30
        assert (await vault.runs.list(updated_after=created[-1])).total >= 1

    async def test_totals_are_capped_at_count_limit_and_pages_still_walk_every_run(
        self, vault: Vault
    ) -> None:
        matching = [
            (await vault.runs.create(project="gamma", actor="ana", purpose=f"needle {i}")).run_id
            for i in range(7)
        ]
        for i in range(3):  # not counted: other project, no needle
            await vault.runs.create(project="delta", actor="ana", purpose=f"hay {i}")

        async def walk(**filters: Any) -> tuple[list[tuple[int, bool]], list[str]]:
            totals: list[tuple[int, bool]] = []
            seen: list[str] = []
            cursor: str | None = None
            while True:
                page = await vault.runs.list(limit=3, cursor=cursor, **filters)
                totals.append((page.total, page.total_is_exact))
                seen.extend(r.run_id for r in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    return totals, seen

        expected = list(reversed(matching))
        searches: list[dict[str, Any]] = [{"project": "gamma"}, {"purpose_contains": "NEEDLE"}]
        for filters in searches:
            # More matches than the cap: total == cap, not exact; every page says so.
            totals, seen = await walk(**filters, count_limit=5)
            assert totals == [(5, False)] * 3
            assert seen == expected
            assert (await vault.runs.list(**filters, count_limit=1)).total_is_exact is False
            # One match over the cap: capped. Exactly the cap, or more, or None: exact.
            for count_limit in (6, 7, 8, 1_000_000, None):
                totals, seen = await walk(**filters, count_limit=count_limit)
                if count_limit == 6:
                    assert totals == [(6, False)] * 3
                else:
                    assert totals == [(7, True)] * 3
                assert seen == expected
            # The default cap (10,000) is far above 7.
            default = await vault.runs.list(**filters)
            assert (default.total, default.total_is_exact) == (7, True)
        nothing = await vault.runs.list(project="epsilon", count_limit=1)
        assert (nothing.total, nothing.total_is_exact, nothing.items) == (0, True, [])

    async def test_count_limit_out_of_range_is_a_validation_error(self, vault: Vault) -> None:
        for bad in (0, -1, 1_000_001):
            with pytest.raises(ValidationError):
                await vault.runs.list(count_limit=bad)

    async def test_bad_cursor_is_a_validation_error(self, vault: Vault) -> None:
        with pytest.raises(ValidationError):
            await vault.runs.list(cursor="definitely-not-a-cursor")

    async def test_bad_filter_is_a_validation_error(self, vault: Vault) -> None:
        with pytest.raises(ValidationError):
            await vault.runs.list(status=["exploded"])
        with pytest.raises(ValidationError):
            await vault.runs.list(project="../x")
        with pytest.raises(ValidationError):
            await vault.runs.list(limit=0)
