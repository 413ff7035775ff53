"""Conformance: run statistics (`RunService.stats`, the port's ``run_stats``).

Runs are written with chosen timestamps straight through the store (``insert_run``): the
service stamps ``created_at`` with the clock. Expected figures are worked out by hand here,
so every backend is checked against the same numbers, not against another backend.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from strongroom.errors import ValidationError
from strongroom.ids import new_id
from strongroom.models import (
    RUN_STATS_MAX_DAYS,
    PlaybookRef,
    Run,
    RunStats,
    RunStatsQuery,
    RunStatus,
)
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault

# Far in the past, so the window never meets a run another test made with the clock.
DAY = datetime(2025, 6, 10, tzinfo=UTC)
_TERMINAL = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


class RunStatsTests(VaultFixtureContract):
    async def _put(
        self,
        vault: Vault,
        created_at: datetime,
        status: RunStatus = RunStatus.COMPLETED,
        *,
        project: str = "proj",
        playbook: str | None = "nightly",
        seconds: float | None = None,
        step: str | None = None,
    ) -> Run:
        """Insert a run created at ``created_at``; ``seconds`` sets started_at and (in a
        terminal status) completed_at that far apart."""
        started = completed = None
        if seconds is not None:
            started = created_at + timedelta(seconds=3)
            if status in _TERMINAL:
                completed = started + timedelta(seconds=seconds)
        run = Run(
            run_id=new_id(),
            project=project,
            actor="tester",
            status=status,
            playbook=PlaybookRef(playbook_id=playbook) if playbook is not None else None,
            created_at=created_at,
            updated_at=created_at,
            started_at=started,
            completed_at=completed,
            current_step=step,
        )
        await vault.metadata.insert_run(run)
        return run

    async def _stats(self, vault: Vault, **filters: Any) -> RunStats:
        filters.setdefault("since", DAY)
        filters.setdefault("until", DAY + timedelta(days=3))
        return await vault.runs.stats(**filters)

    async def test_runs_per_day_and_status_in_a_half_open_window(self, vault: Vault) -> None:
        tick = timedelta(microseconds=1)
        await self._put(vault, DAY - tick)  # before since: out
        await self._put(vault, DAY)  # at since: in
        await self._put(vault, DAY + timedelta(hours=5), RunStatus.FAILED)
        await self._put(vault, DAY + timedelta(days=1) - tick, RunStatus.FAILED)
        await self._put(vault, DAY + timedelta(days=1))
        await self._put(vault, DAY + timedelta(days=1, hours=2), RunStatus.RUNNING)
        await self._put(vault, DAY + timedelta(days=1, hours=3), RunStatus.PENDING)
        # 23:30 at UTC-02:00 is 01:30 UTC the next day: the day is UTC's.
        west = timezone(timedelta(hours=-2))
        await self._put(vault, datetime(2025, 6, 11, 23, 30, tzinfo=west), RunStatus.PAUSED)
        await self._put(vault, DAY + timedelta(days=3) - tick, RunStatus.CANCELLED)
        await self._put(vault, DAY + timedelta(days=3))  # at until: out
        stats = await self._stats(vault)
        day1, day2, day3 = (date(2025, 6, 10 + n) for n in range(3))
        assert [(d.day, d.status, d.count) for d in stats.days] == [
            (day1, RunStatus.COMPLETED, 1),
            (day1, RunStatus.FAILED, 2),
            (day2, RunStatus.PENDING, 1),
            (day2, RunStatus.RUNNING, 1),
            (day2, RunStatus.COMPLETED, 1),
            (day3, RunStatus.PAUSED, 1),
            (day3, RunStatus.CANCELLED, 1),
        ]
        assert stats.runs_counted == 8
        assert (stats.since, stats.until) == (DAY, DAY + timedelta(days=3))
        # Moving the window by one microsecond moves the runs on its edges.
        moved = await self._stats(vault, since=DAY - tick, until=DAY + timedelta(days=3) - tick)
        assert moved.runs_counted == 8
        assert (moved.days[0].day, moved.days[0].count) == (date(2025, 6, 9), 1)
        assert [d.status for d in moved.days if d.day == day3] == [RunStatus.PAUSED]

    async def test_duration_percentiles_are_nearest_rank_per_playbook(self, vault: Vault) -> None:
        nightly = [float(n) for n in range(1, 11)]  # 1..10 s
        for n, seconds in enumerate(nightly):
            status = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)[n % 3]
            await self._put(vault, DAY + timedelta(minutes=n), status, seconds=seconds)
        odd = [0.25, 1.000001, 7200.5]
        for n, seconds in enumerate(odd):
            await self._put(vault, DAY + timedelta(hours=n), playbook=None, seconds=seconds)
        # Not measurable: unfinished, or finished without having started.
        await self._put(vault, DAY, RunStatus.RUNNING, seconds=500.0)
        await self._put(vault, DAY, RunStatus.PAUSED, seconds=500.0)
        await self._put(vault, DAY, RunStatus.CANCELLED)
        await self._put(vault, DAY, RunStatus.FAILED, playbook="other")
        stats = await self._stats(vault)
        assert [(d.playbook_id, d.runs) for d in stats.durations] == [(None, 3), ("nightly", 10)]
        unnamed, named = stats.durations
        # Nearest rank: p50 of 1..10 is 5 (not 5.5), p90 is 9, p95 is 10.
        assert (named.p50_seconds, named.p90_seconds, named.p95_seconds) == (5.0, 9.0, 10.0)
        assert named.max_seconds == 10.0
        for durations, values in ((unnamed, odd), (named, nightly)):
            assert durations.p50_seconds == _nearest_rank(values, 50)
            assert durations.p90_seconds == _nearest_rank(values, 90)
            assert durations.p95_seconds == _nearest_rank(values, 95)
            assert durations.max_seconds == max(values)
        assert unnamed.p50_seconds == 1.000001  # to the microsecond
        assert stats.sampled is False

    async def test_failures_per_step_with_the_playbooks_run_count(self, vault: Vault) -> None:
        at = DAY + timedelta(hours=1)
        for step in ("qa", "qa", "load", None):
            await self._put(vault, at, RunStatus.FAILED, step=step)
        for status in (RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.CANCELLED):
            await self._put(vault, at, status, step="qa")  # counted in runs, not failed
        await self._put(vault, at, RunStatus.FAILED, playbook=None, step="qa")
        await self._put(vault, at, RunStatus.COMPLETED, playbook="calm")  # no failures
        await self._put(vault, DAY - timedelta(days=1), RunStatus.FAILED, step="qa")  # out
        stats = await self._stats(vault)
        assert [(f.playbook_id, f.step, f.failed, f.runs) for f in stats.step_failures] == [
            (None, "qa", 1, 1),
            ("nightly", None, 1, 7),
            ("nightly", "load", 1, 7),
            ("nightly", "qa", 2, 7),
        ]

    async def test_project_and_playbook_filters(self, vault: Vault) -> None:
        at = DAY + timedelta(hours=2)
        await self._put(vault, at, RunStatus.FAILED, project="a", step="qa", seconds=1.0)
        await self._put(vault, at, project="a", seconds=2.0)
        await self._put(vault, at, project="a", playbook="other", seconds=3.0)
        await self._put(vault, at, RunStatus.FAILED, project="b", step="qa", seconds=4.0)
        only_a = await self._stats(vault, project="a")
        assert only_a.runs_counted == 3
        assert [(d.playbook_id, d.runs, d.max_seconds) for d in only_a.durations] == [
            ("nightly", 2, 2.0),
            ("other", 1, 3.0),
        ]
        assert [(f.failed, f.runs) for f in only_a.step_failures] == [(1, 2)]
        nightly = await self._stats(vault, playbook_id="nightly")
        assert nightly.runs_counted == 3
        assert [(f.failed, f.runs) for f in nightly.step_failures] == [(2, 3)]
        both = await self._stats(vault, project="b", playbook_id="nightly")
        assert (both.runs_counted, both.durations[0].max_seconds) == (1, 4.0)
        none = await self._stats(vault, project="c")
        assert none == RunStats(since=none.since, until=none.until, runs_counted=0)

    async def test_an_empty_window(self, vault: Vault) -> None:
        await self._put(vault, DAY + timedelta(days=10), RunStatus.FAILED, seconds=1.0)
        stats = await self._stats(vault)
        assert (stats.days, stats.durations, stats.step_failures) == ([], [], [])
        assert (stats.runs_counted, stats.sampled) == (0, False)

    async def test_until_defaults_to_now_and_a_query_may_be_given_whole(self, vault: Vault) -> None:
        before = datetime.now(UTC)
        run = await self.new_run(vault)  # created now, by the clock
        stats = await vault.runs.stats(since=before - timedelta(minutes=1))
        assert before <= stats.until <= datetime.now(UTC)
        assert stats.runs_counted >= 1
        query = RunStatsQuery(since=DAY, until=DAY + timedelta(days=1), project=run.project)
        assert (await vault.runs.stats(query)).until == query.until
        since = (before - timedelta(days=1)).isoformat()
        mapping = {"since": since, "until": None, "project": run.project}
        assert (await vault.runs.stats(mapping)).runs_counted >= 1

    async def test_bad_windows_and_filters_are_validation_errors(self, vault: Vault) -> None:
        longest = timedelta(days=RUN_STATS_MAX_DAYS)
        await vault.runs.stats(since=DAY, until=DAY + longest)  # exactly the limit: fine
        week: dict[str, Any] = {"since": DAY, "until": DAY + timedelta(days=7)}
        bad: list[tuple[dict[str, Any], str]] = [
            ({"until": DAY + longest + timedelta(microseconds=1)}, "until"),
            ({"since": datetime.now(UTC) - timedelta(days=400), "until": None}, "until"),
            ({"until": DAY}, "until"),  # an empty window
            ({"until": DAY - timedelta(days=1)}, "until"),  # backwards
            ({"since": None}, "since"),
            ({"since": datetime(2025, 6, 10)}, "since"),  # naive
            ({"project": "../x"}, "project"),
            ({"playbook_id": ""}, "playbook_id"),
            ({"status": ["failed"]}, "status"),  # not a field of the query
        ]
        for change, field in bad:
            with pytest.raises(ValidationError) as info:
                await vault.runs.stats(**{**week, **change})
            assert info.value.details["field"] == field, change
            assert info.value.details["operation"] == "runs.stats"
        with pytest.raises(ValidationError) as too_long:
            await vault.runs.stats(since=DAY, until=DAY + timedelta(days=367))
        assert too_long.value.details["field"] == "until"
        assert too_long.value.details["reason"] == "window_too_long"
        with pytest.raises(ValidationError):
            await vault.runs.stats(RunStatsQuery(**week), project="x")  # both
        with pytest.raises(ValidationError):
            await vault.runs.stats()
