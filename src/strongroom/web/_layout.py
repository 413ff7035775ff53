"""Geometry for the Control Room's drawings, computed here and drawn by the templates as SVG
(so every label goes through the template's escaping, and no style attribute is needed: a
bar's colour is its status class): the run page's step timeline (Gantt) and step DAG, and the
overview's runs per day."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from strongroom.models import RunStats
from strongroom.web.models import StepView

__all__ = ["Dag", "DayChart", "Gantt", "dag", "gantt", "runs_per_day"]

LABEL_WIDTH: Final = 200
PLOT_WIDTH: Final = 720
ROW: Final = 22
NODE_W: Final = 160
NODE_H: Final = 28
LAYER_GAP: Final = 60
ROW_GAP: Final = 14


@dataclass
class Bar:
    step_id: str
    status: str
    y: int
    x: float | None = None
    width: float | None = None
    duration: float | None = None


@dataclass
class Gantt:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    label_width: int = LABEL_WIDTH


def gantt(steps: list[StepView], *, now: datetime | None = None) -> Gantt:
    """One row per step; a bar from its start to its end (now, while it runs)."""
    moment = now or datetime.now(UTC)
    spans = [(s.started_at, s.finished_at or moment) for s in steps if s.started_at is not None]
    chart = Gantt(width=LABEL_WIDTH + PLOT_WIDTH + 20, height=ROW * (len(steps) + 1) + 10)
    if not spans:
        chart.bars = [Bar(s.step_id, s.status, y=ROW * (i + 1)) for i, s in enumerate(steps)]
        return chart
    t0 = min(start for start, _ in spans)
    t1 = max(end for _, end in spans)
    span = max((t1 - t0).total_seconds(), 1e-3)
    for i, step in enumerate(steps):
        bar = Bar(step.step_id, step.status, y=ROW * (i + 1), duration=step.duration_seconds)
        if step.started_at is not None:
            end = step.finished_at or moment
            bar.x = LABEL_WIDTH + (step.started_at - t0).total_seconds() / span * PLOT_WIDTH
            bar.width = max(2.0, (end - step.started_at).total_seconds() / span * PLOT_WIDTH)
        chart.bars.append(bar)
    for k in range(5):
        offset = span * k / 4
        chart.ticks.append((LABEL_WIDTH + PLOT_WIDTH * k / 4, _offset(offset)))
    chart.width += 40  # room for the last tick's label
    return chart


def _offset(seconds: float) -> str:
    if seconds < 1:
        return f"+{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"+{seconds:.1f} s"
    if seconds < 7200:
        return f"+{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"+{seconds / 3600:.1f} h"
    return f"+{seconds / 86400:.1f} d"


@dataclass
class Node:
    step_id: str
    status: str
    x: int
    y: int


@dataclass
class Edge:
    path: str
    status: str


@dataclass
class Dag:
    width: int
    height: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    node_w: int = NODE_W
    node_h: int = NODE_H


def dag(steps: list[StepView]) -> Dag:
    """Steps placed in layers by their longest path from a step with no upstream; an edge
    from each upstream step to the step that waits for it."""
    known = {s.step_id: s for s in steps}
    layer: dict[str, int] = {}
    for _ in range(len(steps) + 1):  # relax until stable (a DAG settles in <= len passes)
        changed = False
        for step in steps:
            ups = [u for u in step.upstream if u in known and u != step.step_id]
            value = 1 + max((layer.get(u, 0) for u in ups), default=-1)
            if layer.get(step.step_id) != value:
                layer[step.step_id] = value
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    graph = Dag(width=0, height=0)
    where: dict[str, Node] = {}
    lowest = 0.0  # the lowest point an edge's bow reaches
    for step in steps:
        column = layer.get(step.step_id, 0)
        row = rows.get(column, 0)
        rows[column] = row + 1
        node = Node(
            step.step_id,
            step.status,
            x=10 + column * (NODE_W + LAYER_GAP),
            y=10 + row * (NODE_H + ROW_GAP),
        )
        where[step.step_id] = node
        graph.nodes.append(node)
    for step in steps:
        target = where[step.step_id]
        for up in step.upstream:
            source = where.get(up)
            if source is None or source is target:
                continue
            x1, y1 = source.x + NODE_W, source.y + NODE_H / 2
            x2, y2 = target.x, target.y + NODE_H / 2
            mid = (x1 + x2) / 2
            # An edge that skips layers bows below the row, so it is not hidden behind the
            # nodes it passes.
            skipped = (target.x - source.x) // (NODE_W + LAYER_GAP) - 1
            bow = NODE_H * 0.9 * min(skipped, 4) if skipped > 0 else 0
            c1, c2 = max(y1, y2) + bow, max(y1, y2) + bow
            if not bow:
                c1, c2 = y1, y2
            lowest = max(lowest, c1)
            graph.edges.append(
                Edge(f"M{x1:.0f},{y1:.0f} C{mid:.0f},{c1:.0f} {mid:.0f},{c2:.0f} {x2:.0f},{y2:.0f}",
                     source.status)
            )  # fmt: skip
    graph.width = 20 + (max(rows, default=0) + 1) * (NODE_W + LAYER_GAP)
    graph.height = int(max(20 + max(rows.values(), default=0) * (NODE_H + ROW_GAP), lowest + 10))
    return graph


STATUS_ORDER: Final = ("completed", "failed", "cancelled", "paused", "running", "pending")
CHART_W: Final = 860
CHART_H: Final = 220


@dataclass
class Segment:
    status: str
    x: float
    y: float
    width: float
    height: float
    count: int
    day: str


@dataclass
class DayChart:
    width: int
    height: int
    segments: list[Segment] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    peak: int = 0
    statuses: list[str] = field(default_factory=list)


def runs_per_day(stats: RunStats) -> DayChart:
    """Stacked bars: one per UTC day of the window, one segment per status."""
    first = stats.since.astimezone(UTC).date()
    last = (stats.until - timedelta(microseconds=1)).astimezone(UTC).date()
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    per_day: dict[date, dict[str, int]] = {d: {} for d in days}
    for row in stats.days:
        per_day.setdefault(row.day, {})[row.status.value] = row.count
    peak = max((sum(c.values()) for c in per_day.values()), default=0)
    chart = DayChart(width=CHART_W + 60, height=CHART_H + 40, peak=peak)
    chart.statuses = [s for s in STATUS_ORDER if any(s in c for c in per_day.values())]
    if not days:
        return chart
    slot = CHART_W / len(days)
    bar = max(1.0, slot * 0.8)
    for k, day in enumerate(days):
        x = 50 + k * slot
        y = float(CHART_H + 10)
        for status in STATUS_ORDER:
            count = per_day[day].get(status, 0)
            if not count:
                continue
            height = count / peak * CHART_H if peak else 0
            y -= height
            chart.segments.append(Segment(status, x, y, bar, height, count, day.isoformat()))
        step = max(1, len(days) // 10)
        if k % step == 0:
            chart.labels.append((x + bar / 2, day.strftime("%m-%d")))
    return chart
