"""The runs port: runs, their state snapshots and the one-transaction state change.

Compare-and-set, made atomic by the backend: ``update_run(run, expected_version)`` raises
`Conflict` unless the stored version matches and stores ``run`` with
``version = expected_version + 1``; ``insert_snapshot`` relies on the unique (run_id,
revision) key (the service writes ``expected_revision + 1``, so a stale writer collides);
``record_transition`` writes a snapshot record, a run update and log lines of one run in one
transaction. Every write takes ``audit`` (see `strongroom.ports.metadata`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from strongroom.errors import ValidationError
from strongroom.models import (
    AuditEvent,
    LogEntry,
    Run,
    RunPage,
    RunQuery,
    RunStats,
    RunStatsQuery,
    RunStatusCounts,
    SnapshotRecord,
)

__all__ = ["RunRecords", "transition_run_id"]


def transition_run_id(
    snapshot: SnapshotRecord | None, run: Run | None, log_entries: Sequence[LogEntry]
) -> str | None:
    """The one run the parts of a `record_transition` belong to (None when there are no
    parts); `ValidationError` when they name several."""
    run_ids = {
        *([snapshot.run_id] if snapshot else []),
        *([run.run_id] if run else []),
        *(entry.run_id for entry in log_entries),
    }
    if len(run_ids) > 1:
        raise ValidationError(
            "record_transition: every part must belong to the same run",
            operation="record_transition",
            run_ids=sorted(run_ids),
        )
    return next(iter(run_ids), None)


class RunRecords(ABC):
    """Runs, snapshots and transitions (conformance: `strongroom.testing.RunRecordsTests`)."""

    @abstractmethod
    async def insert_run(self, run: Run, *, audit: AuditEvent | None = None) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str) -> Run: ...

    @abstractmethod
    async def update_run(
        self, run: Run, *, expected_version: int, audit: AuditEvent | None = None
    ) -> Run:
        """Replace the run if its stored version is ``expected_version``; returns the stored run."""

    @abstractmethod
    async def query_runs(self, query: RunQuery) -> RunPage:
        """Filter, sort by (query.sort, run_id), keyset-paginate; ``total`` ignores the cursor.

        ``total`` counts at most ``query.count_limit`` matches (all when it is None): more
        than that -> ``total == count_limit`` and ``total_is_exact`` False (see
        `strongroom.adapters._cursor.capped_total`). The cursor is opaque to callers; an
        undecodable cursor raises `ValidationError`.
        """

    @abstractmethod
    async def count_runs_by_status(self, query: RunQuery) -> RunStatusCounts:
        """The runs matching ``query`` apart from its ``status`` and ``cursor``, counted per
        status, reading at most ``query.count_limit + 1`` matches (all when it is None): more
        -> ``exact`` False and the counts cover the matches read. One read transaction."""

    @abstractmethod
    async def run_stats(self, query: RunStatsQuery) -> RunStats:
        """Statistics of the runs created in the window ``since <= created_at < until``
        (and of the query's project and playbook), read only, in one read transaction:

        - ``days``: runs per (UTC day of ``created_at``, current status);
        - ``durations``: per playbook, nearest-rank percentiles (the value at rank
          ceil(p/100 * n) of the sorted durations) and the maximum of ``completed_at -
          started_at`` in seconds, taken from the newest
          `strongroom.models.RUN_STATS_SAMPLE` *finished* runs (a terminal status) by
          (``created_at``, ``run_id``) descending, ``sampled`` when there are more; those
          without both timestamps are not measured;
        - ``step_failures``: failed runs per (playbook, ``current_step``), each with the
          number of runs of that playbook in the window;
        - lists sorted as `strongroom.models.RunStats` says, empty groups left out.

        Every backend gives the same answer for the same runs (the memory store's is the
        reference). Reads stay bounded: counts are grouped in the database, and at most
        ``RUN_STATS_SAMPLE + 1`` finished runs are read for the durations.
        """

    @abstractmethod
    async def insert_snapshot(
        self, record: SnapshotRecord, *, audit: AuditEvent | None = None
    ) -> None:
        """`Conflict` if (run_id, revision) exists; `NotFound` if the run does not."""

    @abstractmethod
    async def get_snapshot(self, run_id: str, revision: int | None = None) -> SnapshotRecord:
        """The given revision, or the latest when None. `NotFound` when there is none."""

    @abstractmethod
    async def list_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """Every revision of a run, oldest first."""

    @abstractmethod
    async def record_transition(
        self,
        *,
        snapshot: SnapshotRecord | None = None,
        run: Run | None = None,
        expected_version: int = 0,
        log_entries: Sequence[LogEntry] = (),
        audit: AuditEvent | None = None,
    ) -> Run | None:
        """What one change of a run's state writes, all or nothing: ``insert_snapshot``,
        ``update_run(run, expected_version=...)`` and ``append_log_entries`` (each optional,
        all of one run), under the same rules as those methods, in one transaction. Returns
        the stored run (None without ``run``).

        Conflicts carry a ``reason`` saying which part lost: ``stale_revision`` (the snapshot
        revision exists), ``stale_version`` (the run changed), ``stale_head`` (the log moved
        on) or ``sealed`` (the log is sealed)."""
