"""The run service: run records, the status state machine and the run index.

Every change is a compare-and-set on the run's row version; a status change that the state
machine does not allow is a `Conflict`. Ending a run seals its log and writes the audit entry.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from strongroom.errors import Conflict, ErrorInfo, NotFound, ValidationError
from strongroom.ids import check_entity_id, check_key, key_run_id, new_id
from strongroom.models import (
    ALLOWED_TRANSITIONS,
    MAX_LABELS,
    TERMINAL_STATUSES,
    AuditEvent,
    MetricPoint,
    Record,
    Run,
    RunOutcome,
    RunPage,
    RunQuery,
    RunStats,
    RunStatsQuery,
    RunStatus,
    RunStatusCounts,
    check_json_value,
    utcnow,
)
from strongroom.models.runs import LabelKey, LabelValue, MetricKey, MetricValue
from strongroom.ports import RunRecords
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import parse, query_of, retry_on_conflict
from strongroom.services.logs import LogService

__all__ = ["RunService"]

_MUTABLE_FIELDS = frozenset(
    {
        "purpose",
        "current_phase",
        "current_step",
        "inputs",
        "outputs",
        "progress",
        "summary",
        "trace",
        "last_error",
        "playbook",
        "labels",
    }
)

METRIC_EVENT = "metric"
"""The log event of one metric value (`RunService.log_metric`); its data: key, value, step."""


class _LabelChange(Record):
    labels: dict[LabelKey, LabelValue | None] = Field(max_length=MAX_LABELS)


class _MetricValue(Record):
    key: MetricKey
    value: MetricValue
    step: int | None = Field(default=None, ge=0, le=2**63 - 1)


MAX_KEY_ATTEMPTS = 10_000
"""How many failed or cancelled attempts one idempotency key may go through."""


def _run_id(value: str, operation: str) -> str:
    try:
        return check_entity_id(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"invalid run id {str(value)[:80]!r}: {exc}", operation=operation, reason="bad_id"
        ) from None


@checked_arguments
class RunService:
    def __init__(self, store: RunRecords, logs: LogService) -> None:
        self._store = store
        self._logs = logs

    async def create(self, *, project: str, actor: str = "local", **fields: Any) -> Run:
        """Create a pending run (UUIDv7 id unless ``run_id`` is given) and audit it.
        ``fields`` are `Run` fields, e.g. ``purpose`` or ``labels`` (free-form string
        labels, key -> value, indexed for `list`)."""
        now = utcnow()
        data = {"run_id": new_id(), **fields, "project": project, "actor": actor}
        data.update(created_at=now, updated_at=now, status=RunStatus.PENDING, version=1)
        run = parse(Run, data, operation="runs.create")
        await self._store.insert_run(
            run,
            audit=AuditEvent(
                event="run.created",
                actor=run.actor,
                subject_type="run",
                subject_id=run.run_id,
                details={"project": run.project, "source": run.source.value},
            ),
        )
        return run

    async def get(self, run_id: str) -> Run:
        return await self._store.get_run(_run_id(run_id, "runs.get"))

    async def by_key(self, scope: str, key: str) -> tuple[int, Run | None]:
        """The newest attempt of idempotency key ``key`` in ``scope`` and its number, or
        (-1, None) when the key has no run yet. Attempt n has the id
        `strongroom.ids.key_run_id` (scope, key, n); a failed or cancelled attempt is
        followed by the next, so the ids are tried in order."""
        try:
            check_key(key)
            check_key(scope)  # a project or playbook id: printable text too
        except ValueError as exc:
            raise ValidationError(str(exc), operation="runs.by_key", reason="bad_key") from None
        latest: Run | None = None
        for attempt in range(MAX_KEY_ATTEMPTS):
            try:
                latest = await self.get(key_run_id(scope, key, attempt))
            except NotFound:
                return attempt - 1, latest
        raise Conflict(
            f"idempotency key {key!r} has been attempted {MAX_KEY_ATTEMPTS} times",
            operation="runs.by_key",
            reason="too_many_attempts",
        )

    async def list(
        self, query: RunQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> RunPage:
        """One page of the run index: a `RunQuery`, or its fields as keywords (e.g.
        ``list(status=["running"], project="docs", limit=50, cursor=page.next_cursor)``).

        ``total`` is capped at ``count_limit`` matches (default 10,000; then
        ``total_is_exact`` is False); ``count_limit=None`` counts every match, which reads
        the whole group (or, for ``purpose_contains``, every run).
        """
        return await self._store.query_runs(
            query_of(RunQuery, query, filters, operation="runs.list")
        )

    async def count_by_status(
        self, query: RunQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> RunStatusCounts:
        """How many runs match a `RunQuery` (or its fields as keywords) in each status, its
        own ``status`` and ``cursor`` aside: one pass over at most ``count_limit + 1``
        matches (default 10,000; ``exact`` is False past it), answered from the same indexes
        as ``list``; with a label, from that label's index however common it is."""
        return await self._store.count_runs_by_status(
            query_of(RunQuery, query, filters, operation="runs.count_by_status")
        )

    async def stats(
        self, query: RunStatsQuery | Mapping[str, Any] | None = None, **filters: Any
    ) -> RunStats:
        """Statistics of the runs created in a window, for dashboards: a `RunStatsQuery`, or
        its fields as keywords (e.g. ``stats(since=now - timedelta(days=30),
        project="docs")``). ``until`` defaults to now; the window is half-open (``since``
        inclusive, ``until`` exclusive) and at most `strongroom.models.RUN_STATS_MAX_DAYS`
        days long, else `ValidationError`.

        Returns runs per UTC day and status, duration percentiles per playbook (nearest-rank,
        from the newest `strongroom.models.RUN_STATS_SAMPLE` finished runs; ``sampled``
        says when there were more) and failed runs per playbook and step with the
        playbook's run count (the failure rate is ``failed / runs``). Read only; the same
        answer on every backend.
        """
        return await self._store.run_stats(
            query_of(RunStatsQuery, query, filters, operation="runs.stats")
        )

    async def set_labels(
        self,
        run_id: str,
        labels: Mapping[str, str | None],
        *,
        expected_version: int | None = None,
    ) -> Run:
        """Set the given labels (a value of None removes that label), keeping the others.
        Compare-and-set like `update` and audited as a run update (``run.updated``)."""
        operation = "runs.set_labels"
        run_id = _run_id(run_id, operation)
        change = parse(_LabelChange, {"labels": labels}, operation=operation, run_id=run_id)
        current = await self.get(run_id)
        merged = dict(current.labels)
        for key, value in change.labels.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        updated, version = await self.prepare_update(
            current.run_id, expected_version=expected_version, current=current, labels=merged
        )
        return await self._store.update_run(
            updated, expected_version=version, audit=update_event(updated, ["labels"])
        )

    async def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        *,
        step: int | None = None,
        expected_version: int | None = None,
    ) -> Run:
        """Record one value of metric ``key`` (a finite number; ``step`` orders a series):
        a ``metric`` line in the run's hash-chained log (the series, `metric_history`) and
        the run's ``metrics[key]`` (the latest value, indexed for `list`), in one
        transaction, audited as a run update. A finished run's log is sealed: `Conflict`
        (reason ``sealed``)."""
        operation = "runs.log_metric"
        run_id = _run_id(run_id, operation)
        point = parse(
            _MetricValue,
            {"key": key, "value": value, "step": step},
            operation=operation,
            run_id=run_id,
        )
        current = await self.get(run_id)
        run_id = current.run_id
        redacted = self._logs.prepare(
            run_id, [{"event": METRIC_EVENT, "data": point.model_dump(mode="json")}]
        )
        await self._logs.ensure_reference(run_id)
        first = True

        async def attempt() -> Run:
            nonlocal first, current
            if not first:
                current = await self.get(run_id)
            updated, version = await self.prepare_update(
                run_id, expected_version=expected_version, current=current
            )
            updated = updated.model_copy(
                update={"metrics": {**current.metrics, point.key: point.value}}
            )
            updated = parse(Run, updated.model_dump(), operation=operation, run_id=run_id)
            entries = await self._logs.chain(run_id, redacted, cached=first)
            first = False
            try:
                stored = await self._store.record_transition(
                    run=updated,
                    expected_version=version,
                    log_entries=entries,
                    audit=update_event(updated, ["metrics"]),
                )
            except Conflict:
                self._logs.forget(run_id)
                raise
            self._logs.remember(entries)
            self._logs.carried(run_id, entries[-1].seq)
            assert stored is not None
            return stored

        final = {"sealed"} if expected_version is None else {"sealed", "stale_version"}
        return await retry_on_conflict(attempt, final=frozenset(final))

    async def metric_history(self, run_id: str, key: str) -> builtins.list[MetricPoint]:
        """Every value `log_metric` recorded for ``key`` on the run, oldest first (read
        back from the run's log)."""
        operation = "runs.metric_history"
        run_id = _run_id(run_id, operation)
        wanted = parse(
            _MetricValue, {"key": key, "value": 0.0}, operation=operation, run_id=run_id
        ).key
        run_id = (await self.get(run_id)).run_id
        points: builtins.list[MetricPoint] = []
        async for entry in self._logs.iter_entries(run_id):
            if entry.event != METRIC_EVENT or entry.data.get("key") != wanted:
                continue
            try:
                points.append(
                    MetricPoint.model_validate(
                        {**entry.data, "at": entry.timestamp, "seq": entry.seq}
                    )
                )
            except (TypeError, ValueError):
                continue  # a line of that name the caller wrote by hand: not a metric value
        return points

    async def update(
        self,
        run_id: str,
        *,
        expected_version: int | None = None,
        **changes: Any,
    ) -> Run:
        """Change descriptive fields (phase, step, progress, outputs...). Compare-and-set."""
        updated, version = await self.prepare_update(
            run_id, expected_version=expected_version, **changes
        )
        return await self._store.update_run(
            updated,
            expected_version=version,
            audit=update_event(updated, sorted(changes)),
        )

    async def prepare_update(
        self,
        run_id: str,
        *,
        expected_version: int | None = None,
        current: Run | None = None,
        **changes: Any,
    ) -> tuple[Run, int]:
        """The first half of `update`: the changed run and the version it must replace
        (`TransitionService` writes it with the rest of a transition). ``current`` is the
        caller's copy of the record (what a previous write returned): the change then applies
        to it without reading the run first, and the write fails with `Conflict` if anyone
        changed the run since."""
        unknown = set(changes) - _MUTABLE_FIELDS
        if unknown:
            raise ValidationError(
                f"these run fields cannot be changed directly: {', '.join(sorted(unknown))}",
                operation="runs.update",
                run_id=run_id,
            )
        for name, value in changes.items():  # a built model is not re-validated by parse
            check_json_value(
                value.model_dump() if isinstance(value, Record) else value,
                field=name,
                operation="runs.update",
                run_id=run_id,
            )
        if current is None or current.run_id != run_id:
            current = await self.get(run_id)
        version = expected_version if expected_version is not None else current.version
        updated = parse(
            Run,
            {**current.model_dump(), **changes, "updated_at": utcnow()},
            operation="runs.update",
            run_id=run_id,
        )
        return self._redact_error(updated, changes.get("last_error")), version

    def _redact_error(self, run: Run, given: object) -> Run:
        """A run whose error was just given, with it redacted as log lines are (the vault's
        patterns): every path that stores an error goes through here."""
        if given is None or run.last_error is None:
            return run
        return run.model_copy(update={"last_error": self._logs.redactor.error(run.last_error)})

    async def transition(
        self,
        run_id: str,
        status: RunStatus | str,
        *,
        expected_version: int | None = None,
        outcome: RunOutcome | str | None = None,
        error: ErrorInfo | dict[str, Any] | None = None,
        actor: str = "system",
    ) -> Run:
        """Move a run along the state machine; illegal moves raise `Conflict`.

        With ``expected_version`` the move is a strict compare-and-set; without it the current
        version is read and a racing change surfaces as `Conflict` as well.
        """
        target = parse(Run, {**_blank(), "status": status}, operation="runs.transition").status
        current = await self.get(run_id)
        run_id = current.run_id  # canonical: the id given may differ in case
        if expected_version is not None and current.version != expected_version:
            raise Conflict(
                f"run {run_id} changed concurrently",
                operation="runs.transition",
                run_id=run_id,
                reason=f"expected version {expected_version}, found {current.version}",
            )
        if target not in ALLOWED_TRANSITIONS[current.status]:
            raise Conflict(
                f"run {run_id} cannot go from {current.status.value} to {target.value}",
                operation="runs.transition",
                run_id=run_id,
                reason="illegal_transition",
            )
        now = utcnow()
        changes: dict[str, Any] = {"status": target, "updated_at": now}
        if target is RunStatus.RUNNING and current.started_at is None:
            changes["started_at"] = now
        if target in TERMINAL_STATUSES:
            changes["completed_at"] = now
            changes["outcome"] = (
                outcome
                or {
                    RunStatus.COMPLETED: RunOutcome.SUCCESS,
                    RunStatus.FAILED: RunOutcome.FAILURE,
                    RunStatus.CANCELLED: None,
                }[target]
            )
        if error is not None:  # checked as input like the rest (a built ErrorInfo was not)
            changes["last_error"] = error.model_dump() if isinstance(error, ErrorInfo) else error
            check_json_value(
                changes["last_error"], field="error", operation="runs.transition", run_id=run_id
            )
        updated = parse(
            Run, {**current.model_dump(), **changes}, operation="runs.transition", run_id=run_id
        )
        updated = self._redact_error(updated, error)
        if target in TERMINAL_STATUSES:
            event = AuditEvent(
                event="run.ended",
                actor=actor,
                subject_type="run",
                subject_id=run_id,
                details={
                    "status": target.value,
                    "outcome": updated.outcome.value if updated.outcome else None,
                    "error_code": updated.last_error.code if updated.last_error else None,
                },
            )
        else:
            event = AuditEvent(
                event="run.status",
                actor=actor,
                subject_type="run",
                subject_id=run_id,
                details={"from": current.status.value, "to": target.value},
            )
        stored = await self._store.update_run(
            updated, expected_version=current.version, audit=event
        )
        if target in TERMINAL_STATUSES:
            await self._logs.seal(run_id, actor=actor)
        return stored

    async def start(self, run_id: str, **kw: Any) -> Run:
        return await self.transition(run_id, RunStatus.RUNNING, **kw)

    async def complete(self, run_id: str, **kw: Any) -> Run:
        return await self.transition(run_id, RunStatus.COMPLETED, **kw)

    async def fail(self, run_id: str, error: ErrorInfo | dict[str, Any], **kw: Any) -> Run:
        return await self.transition(run_id, RunStatus.FAILED, error=error, **kw)

    async def cancel(self, run_id: str, **kw: Any) -> Run:
        return await self.transition(run_id, RunStatus.CANCELLED, **kw)


def update_event(run: Run, fields: list[str]) -> AuditEvent:
    """The audit event a change of a run's descriptive fields is written with."""
    return AuditEvent(
        event="run.updated",
        subject_type="run",
        subject_id=run.run_id,
        details={"fields": fields, "version": run.version + 1},
    )


def _blank() -> dict[str, Any]:
    # The smallest valid run, used to parse a status value with the model's own rules.
    return {"run_id": "00000000-0000-7000-8000-000000000000", "project": "p", "actor": "a"}
