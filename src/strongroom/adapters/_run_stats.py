"""Run statistics (`RunRecords.run_stats`) as every backend computes them: one percentile
method, one way of measuring a run, one assembly of `RunStats` from the counts a backend
read, and the whole computation over run records (the memory store's, and the reference the
SQL statements of `strongroom.adapters._sql.run_stats` must agree with).

The meaning, whatever the backend:

- a run is in the window when ``since <= created_at < until`` (and it matches the project
  and playbook filters);
- ``days``: runs per (UTC day of ``created_at``, current status);
- ``durations`` are taken from the newest `RUN_STATS_SAMPLE` *finished* runs of the window
  (a terminal status: completed, failed, cancelled), newest by (``created_at``, ``run_id``)
  descending; more finished runs -> ``sampled``. Of those, the runs with ``started_at``
  and ``completed_at`` set are measured: ``completed_at - started_at`` in seconds;
- percentiles are nearest-rank (`nearest_rank`);
- ``step_failures``: failed runs per (playbook, ``current_step``), each with the count of
  every run of that playbook in the window.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Final

from strongroom.models import (
    RUN_STATS_SAMPLE,
    TERMINAL_STATUSES,
    DayCount,
    PlaybookDurations,
    Run,
    RunStats,
    RunStatsQuery,
    RunStatus,
    StepFailures,
)

__all__ = [
    "DurationSample",
    "assemble_stats",
    "duration_seconds",
    "nearest_rank",
    "run_stats_of",
]

DurationSample = tuple[str | None, float | None]
"""One finished run: (playbook id or None, duration in seconds or None when not measured)."""

_STATUS_ORDER: Final = {status: n for n, status in enumerate(RunStatus)}


def nearest_rank(ordered: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile of ``ordered`` (sorted ascending, not empty): the value
    at rank ceil(percent / 100 * n), counting from 1 (rank 1 for percent 0), so always one
    of the values; computed in integers, exact for any n."""
    if not ordered:
        raise ValueError("nearest_rank of no values")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be 0-100, got {percent}")
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def duration_seconds(
    started: datetime | str | None, completed: datetime | str | None
) -> float | None:
    """``completed - started`` in seconds; the values are datetimes or the ISO-8601 text a
    stored run body holds. None when either is missing or is not a timestamp (a hand-edited
    body: verify reports it)."""
    if started is None or completed is None:
        return None
    try:
        begin = started if isinstance(started, datetime) else datetime.fromisoformat(started)
        end = completed if isinstance(completed, datetime) else datetime.fromisoformat(completed)
        return (end - begin).total_seconds()
    except (TypeError, ValueError):  # not text, not ISO, or a naive timestamp
        return None


def _nulls_first(value: str | None) -> tuple[bool, str]:
    return (value is not None, value or "")


def assemble_stats(
    query: RunStatsQuery,
    *,
    day_counts: Mapping[tuple[date, RunStatus], int],
    samples: Sequence[DurationSample],
    failures: Mapping[tuple[str | None, str | None], int],
    playbook_runs: Mapping[str | None, int],
) -> RunStats:
    """`RunStats` from what a backend counted: runs per (day, status); failed
    runs per (playbook, step); runs per playbook (at least every playbook of ``failures``).

    ``samples`` are the window's finished runs, newest first, up to `RUN_STATS_SAMPLE` + 1
    of them (one more says ``sampled``), each with its duration or None."""
    days = [
        DayCount(day=day, status=status, count=count)
        for (day, status), count in sorted(
            day_counts.items(), key=lambda item: (item[0][0], _STATUS_ORDER[item[0][1]])
        )
        if count > 0
    ]
    sampled = len(samples) > RUN_STATS_SAMPLE
    by_playbook: defaultdict[str | None, list[float]] = defaultdict(list)
    for playbook_id, seconds in samples[:RUN_STATS_SAMPLE]:
        if seconds is not None:
            by_playbook[playbook_id].append(seconds)
    durations = []
    for playbook_id in sorted(by_playbook, key=_nulls_first):
        ordered = sorted(by_playbook[playbook_id])
        durations.append(
            PlaybookDurations(
                playbook_id=playbook_id,
                runs=len(ordered),
                p50_seconds=nearest_rank(ordered, 50),
                p90_seconds=nearest_rank(ordered, 90),
                p95_seconds=nearest_rank(ordered, 95),
                max_seconds=ordered[-1],
            )
        )
    step_failures = [
        StepFailures(
            playbook_id=playbook_id,
            step=step,
            failed=failed,
            # A failed run is a run of its playbook: never fewer runs than failures, even if
            # the backend's two counts disagree (they are read in one transaction).
            runs=max(playbook_runs.get(playbook_id, 0), failed),
        )
        for (playbook_id, step), failed in sorted(
            failures.items(), key=lambda item: (_nulls_first(item[0][0]), _nulls_first(item[0][1]))
        )
        if failed > 0
    ]
    return RunStats(
        since=query.since,
        until=query.until,
        days=days,
        durations=durations,
        step_failures=step_failures,
        runs_counted=sum(day.count for day in days),
        sampled=sampled,
    )


def _in_window(run: Run, query: RunStatsQuery) -> bool:
    if not query.since <= run.created_at < query.until:
        return False
    if query.project is not None and run.project != query.project:
        return False
    playbook_id = run.playbook.playbook_id if run.playbook is not None else None
    return query.playbook_id is None or playbook_id == query.playbook_id


def run_stats_of(runs: Iterable[Run], query: RunStatsQuery) -> RunStats:
    """`RunStats` of ``runs`` (any order): the reference computation, by reading every run."""
    day_counts: Counter[tuple[date, RunStatus]] = Counter()
    failures: Counter[tuple[str | None, str | None]] = Counter()
    playbook_runs: Counter[str | None] = Counter()
    finished: list[tuple[datetime, str, str | None, float | None]] = []
    for run in runs:
        if not _in_window(run, query):
            continue
        playbook_id = run.playbook.playbook_id if run.playbook is not None else None
        day_counts[(run.created_at.date(), run.status)] += 1
        playbook_runs[playbook_id] += 1
        if run.status is RunStatus.FAILED:
            failures[(playbook_id, run.current_step)] += 1
        if run.status in TERMINAL_STATUSES:
            seconds = duration_seconds(run.started_at, run.completed_at)
            finished.append((run.created_at, run.run_id, playbook_id, seconds))
    finished.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return assemble_stats(
        query,
        day_counts=day_counts,
        samples=[(playbook_id, seconds) for _, _, playbook_id, seconds in finished],
        failures=failures,
        playbook_runs=playbook_runs,
    )
