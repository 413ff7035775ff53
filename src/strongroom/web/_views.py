"""The views the pages and the API share, each built from a bounded number of reads: a run's
steps (from its latest snapshot) and the workers that ran them (its step claims), a diff of
two snapshot revisions, a comparison of runs, status counts for the index, the host's sandbox
layers, and the run query a URL encodes."""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from strongroom.errors import NotFound, ValidationError
from strongroom.models import Run, RunQuery, RunState, RunStats, RunStatusCounts
from strongroom.models.runs import DEFAULT_COUNT_LIMIT
from strongroom.orchestrator.state import STATE_KEY, PlanState
from strongroom.sandbox.host import LAYERS, disabled_layers, probe_host
from strongroom.services import parse, parse_labels, parse_where
from strongroom.vault import Vault
from strongroom.web.models import (
    MAX_STEP_WORKERS,
    ComparedRun,
    ComparedStep,
    Comparison,
    HostLayer,
    HostReport,
    RunSteps,
    SnapshotDiff,
    StepView,
    StepWorker,
)

__all__ = [
    "MAX_COMPARE",
    "compare_runs",
    "host_report",
    "overview",
    "run_duration",
    "run_query",
    "run_steps",
    "snapshot_diff",
    "status_counts",
    "step_workers",
]

MAX_COMPARE: Final = 8
MAX_DIFF_LINES: Final = 5000
MAX_DIFF_INPUT: Final = 4 * 1024 * 1024
"""Snapshots larger than this (as pretty JSON) are not diffed in the Control Room."""


def run_query(
    *,
    status: Sequence[str] = (),
    project: str | None = None,
    playbook: str | None = None,
    actor: str | None = None,
    previous: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    label: Sequence[str] = (),
    where: Sequence[str] = (),
    sort: str = "created_at",
    asc: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> RunQuery:
    """The `RunQuery` a runs URL encodes (the ``runs list`` options, by the same names)."""
    statuses = [s.strip() for value in status for s in value.split(",") if s.strip()]
    return parse(
        RunQuery,
        {
            "status": statuses or None,
            "project": project or None,
            "playbook_id": playbook or None,
            "actor": actor or None,
            "previous_run_id": previous or None,
            "created_after": _instant(since, "since"),
            "created_before": _instant(until, "until"),
            "purpose_contains": search or None,
            "labels": parse_labels(list(label), option="label") or None,
            "where": parse_where(list(where), option="where") or None,
            "sort": sort,
            "descending": not asc,
            "limit": limit,
            "cursor": cursor or None,
            "count_limit": DEFAULT_COUNT_LIMIT,
        },
        operation="web.runs",
    )


def _instant(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC. Near the ends of the calendar an offset can carry it past year 1 or
    9999: that is a bad parameter (422), not the `OverflowError` ``astimezone`` raises."""
    if value is None or value.tzinfo is None:
        return value  # a naive time is refused by the model, as a validation error
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{name}: {value.isoformat()} is out of range in UTC",
            operation="web.runs",
            field=name,
            reason="out_of_range",
        ) from None


async def overview(
    vault: Vault, *, days: int, project: str | None = None, playbook: str | None = None
) -> RunStats:
    """The overview's figures for the last ``days`` days (to the end of today, UTC): runs
    per day by status, duration percentiles per playbook, failures per step (`runs.stats`,
    bounded queries)."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return await vault.runs.stats(
        since=end - timedelta(days=days),
        until=end,
        project=project or None,
        playbook_id=playbook or None,
    )


async def status_counts(vault: Vault, query: RunQuery) -> RunStatusCounts:
    """Matches of ``query`` (its status filter aside) per status: one pass over at most the
    index's count limit of matches (`RunService.count_by_status`)."""
    return await vault.runs.count_by_status(query)


def run_duration(run: Run) -> float | None:
    if run.started_at is None or run.completed_at is None:
        return None
    return (run.completed_at - run.started_at).total_seconds()


async def _latest_state(vault: Vault, run_id: str) -> tuple[int | None, RunState | None]:
    try:
        snapshot = await vault.snapshots.load(run_id)
    except NotFound:
        await vault.runs.get(run_id)  # a missing run is not found; a run without snapshot is ok
        return None, None
    return snapshot.record.revision, snapshot.state


async def step_workers(vault: Vault, run_id: str) -> tuple[list[StepWorker], bool]:
    """The run's step claims (which worker ran each attempt), by step then attempt: at most
    `MAX_STEP_WORKERS`, and whether there were more."""
    claims = await vault.metadata.list_step_claims(
        run_id, limit=MAX_STEP_WORKERS + 1, responses=False
    )
    workers = [StepWorker.model_validate(c) for c in claims[:MAX_STEP_WORKERS]]
    return workers, len(claims) > MAX_STEP_WORKERS


async def run_steps(vault: Vault, run_id: str, *, workers: bool = True) -> RunSteps:
    """The run's steps from its latest snapshot: the orchestrator's plan for a playbook run,
    the phase history for a pipeline run; with ``workers``, the workers that ran them."""
    steps = await _steps(vault, run_id)
    if workers:
        steps.workers, steps.workers_truncated = await step_workers(vault, run_id)
    return steps


async def _steps(vault: Vault, run_id: str) -> RunSteps:
    revision, state = await _latest_state(vault, run_id)
    if state is None:
        return RunSteps(run_id=run_id, source="none")
    plan_data = state.data.get(STATE_KEY)
    if isinstance(plan_data, dict):
        plan = PlanState.model_validate(plan_data)
        steps = [
            StepView(
                step_id=step.step_id,
                status=step.status.value,
                started_at=step.started_at,
                finished_at=step.finished_at,
                duration_seconds=step.duration_seconds(),
                upstream=list(step.upstream),
                tool=step.tool_ref,
                output_artifact_id=step.output_artifact_id,
                output_sha256=step.output_sha256,
                error=step.error,
            )
            for step in plan.ordered()
        ]
        return RunSteps(run_id=run_id, source="orchestrator", revision=revision, steps=steps)
    phases: dict[str, StepView] = {}
    previous: str | None = None
    for event in state.phase_history:
        view = phases.get(event.phase)
        if view is None:
            view = StepView(
                step_id=event.phase,
                status="running",
                upstream=[previous] if previous is not None else [],
            )
            phases[event.phase] = view
            previous = event.phase
        if event.status == "started":
            view.started_at = view.started_at or event.at
            view.status = "running"
        else:
            view.status = event.status
            view.finished_at = event.at
            view.error = event.error
            if event.artifact_ids:
                view.output_artifact_id = event.artifact_ids[-1]
        if view.started_at is not None and view.finished_at is not None:
            view.duration_seconds = (view.finished_at - view.started_at).total_seconds()
    return RunSteps(run_id=run_id, source="phases", revision=revision, steps=list(phases.values()))


def _pretty(state: RunState) -> str:
    text = json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
    if len(text) > MAX_DIFF_INPUT:
        raise ValidationError(
            "this snapshot is too large to diff in the Control Room "
            f"(more than {MAX_DIFF_INPUT // (1024 * 1024)} MiB as JSON)",
            operation="web.snapshot_diff",
            reason="too_large",
        )
    return text


async def snapshot_diff(vault: Vault, run_id: str, a: int, b: int) -> SnapshotDiff:
    """A unified diff from revision ``a`` to revision ``b`` of the run's state."""
    first = await vault.snapshots.load(run_id, a)
    second = await vault.snapshots.load(run_id, b)

    def diff() -> list[str]:
        lines = difflib.unified_diff(
            _pretty(first.state).splitlines(),
            _pretty(second.state).splitlines(),
            fromfile=f"revision {a}",
            tofile=f"revision {b}",
            lineterm="",
        )
        out: list[str] = []
        for line in lines:
            if len(out) > MAX_DIFF_LINES:
                break
            out.append(line[:2000])
        return out

    lines = await asyncio.to_thread(diff)
    truncated = len(lines) > MAX_DIFF_LINES
    return SnapshotDiff(run_id=run_id, a=a, b=b, lines=lines[:MAX_DIFF_LINES], truncated=truncated)


async def compare_runs(vault: Vault, run_ids: Sequence[str]) -> Comparison:
    """Runs side by side: status, durations per step, output digests, inputs, labels."""
    unique = list(dict.fromkeys(run_ids))
    if not 2 <= len(unique) <= MAX_COMPARE:
        raise ValidationError(
            f"compare takes 2 to {MAX_COMPARE} different runs (got {len(unique)})",
            operation="web.compare",
            reason="bad_count",
        )
    compared: list[ComparedRun] = []
    step_ids: list[str] = []
    for run_id in unique:
        run = await vault.runs.get(run_id)
        steps = await run_steps(vault, run_id, workers=False)
        for step in steps.steps:
            if step.step_id not in step_ids:
                step_ids.append(step.step_id)
        compared.append(
            ComparedRun(
                run_id=run.run_id,
                status=run.status.value,
                outcome=run.outcome.value if run.outcome else None,
                playbook=run.playbook.playbook_id if run.playbook else None,
                duration_seconds=run_duration(run),
                inputs=[ref.artifact_id for ref in run.inputs],
                labels=dict(run.labels),
                metrics=dict(run.metrics),
                steps={
                    step.step_id: ComparedStep(
                        step_id=step.step_id,
                        status=step.status,
                        duration_seconds=step.duration_seconds,
                        output_sha256=step.output_sha256 or None,
                    )
                    for step in steps.steps
                },
            )
        )
    same: dict[str, bool] = {}
    for step_id in step_ids:
        digests = {r.steps[step_id].output_sha256 for r in compared if step_id in r.steps}
        same[step_id] = len(digests) == 1 and None not in digests
    return Comparison(
        runs=compared,
        step_ids=step_ids,
        same_outputs=same,
        label_keys=sorted({k for r in compared for k in r.labels}),
        metric_keys=sorted({k for r in compared for k in r.metrics}),
    )


async def host_report() -> HostReport:
    """The sandbox layers this host enforces (probed once per process, in a child)."""
    caps = await asyncio.to_thread(probe_host)
    disabled = disabled_layers()
    available = caps.available()
    layers: list[HostLayer] = []
    for layer, description in LAYERS.items():
        status: Any
        if layer in disabled:
            status = "disabled"
        elif available.get(layer):
            status = "enforced"
        elif layer == "unprivileged_uid" and not caps.root:
            status = "not_applicable"
        else:
            status = "unavailable"
        layers.append(HostLayer(layer=layer, description=description, status=status))
    facts = {k: v for k, v in caps.to_dict().items() if k not in ("layers", "notes")}
    return HostReport(layers=layers, facts=facts, notes=dict(caps.notes))
