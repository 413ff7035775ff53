"""Geometry for the run page's two drawings, computed here and drawn by the templates as SVG
(so every label goes through the template's escaping, and no style attribute is needed: a
bar's colour is its status class): the step timeline (Gantt) and the step DAG."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from strongroom.web.models import StepView

__all__ = ["Dag", "Gantt", "dag", "gantt"]

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
    return f"+{seconds / 60:.1f} min"


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
            graph.edges.append(
                Edge(f"M{x1:.0f},{y1:.0f} C{mid:.0f},{c1:.0f} {mid:.0f},{c2:.0f} {x2:.0f},{y2:.0f}",
                     source.status)
            )  # fmt: skip
    graph.width = 20 + (max(rows, default=0) + 1) * (NODE_W + LAYER_GAP)
    graph.height = 20 + max(rows.values(), default=0) * (NODE_H + ROW_GAP) + NODE_H * 4
    return graph
