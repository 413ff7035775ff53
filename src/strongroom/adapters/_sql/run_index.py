"""The run index: the statements behind `RunRecords.query_runs` (filters, label and metric
conditions, keyset pages on (sort key, run_id)) and the derived label/metric index rows kept
in step with every run write (`sync_index`).

One composite index per common filter, each ending in the sort key, and keyset pagination on
(sort column, run_id) with the cursor of `strongroom.adapters._cursor`. Time filters are
half-open: ``*_after`` is inclusive, ``*_before`` exclusive. Labels and metrics live in the
run's body (bound to the audit chain); ``run_labels`` / ``run_metrics`` only index them.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection

from strongroom.adapters._cursor import (
    decode_metric_cursor,
    decode_run_cursor,
)
from strongroom.adapters._sql.columns import UtcTimestamp
from strongroom.adapters._sql.tables import (
    run_labels_table,
    run_metrics_table,
    runs_table,
)
from strongroom.models import (
    Run,
    RunQuery,
)

__all__ = [
    "LABEL_DRIVE_LIMIT",
    "has_run_filters",
    "label_match_probe",
    "run_index_statements",
    "status_count_statement",
    "sync_index",
]


LABEL_DRIVE_LIMIT: Final = 4000
"""A label filter matching at most this many runs drives the page from the label index (the
matches are read and sorted); one matching more walks the sort index and checks each run's
labels (a common label finds a page's worth quickly). `query_runs` counts the matches of each
label filter, up to this limit, from the (key, value, run_id) index to choose."""


def run_index_statements(
    query: RunQuery, *, drive_label: tuple[str, str] | None = None
) -> tuple[Select[int], Select[Any]]:
    """The COUNT (filters only) and the page SELECT (filters + keyset + limit+1) of a query.

    With ``query.count_limit`` the COUNT is capped: it counts the rows of
    ``SELECT 1 ... LIMIT count_limit + 1``, so the database stops reading after that many
    matches (more than ``count_limit`` = "count_limit+"); without it, an exact
    ``SELECT count(*) ... WHERE``. Both are answered from one composite index when the
    filters match its prefix, e.g. status + project -> ``ix_runs_status_project_created``.

    Labels and metric conditions are EXISTS checks on ``run_labels`` / ``run_metrics``;
    ``drive_label`` (one of ``query.labels``) is joined instead, so the page is read from the
    label index (`LABEL_DRIVE_LIMIT`). A metric sort joins ``run_metrics`` on the key and
    walks its (key, value, run_id) index: runs without the metric are left out.
    A bad cursor -> `ValidationError`.
    """
    c = runs_table.c
    run_filters = _run_filters(query)
    filters = list(run_filters)
    source: Any = runs_table
    metric = query.sort_metric
    labels = sorted((query.labels or {}).items())
    if drive_label is not None:
        driver = run_labels_table.alias("drive")
        source = driver.join(runs_table, driver.c.run_id == c.run_id)
        filters += [driver.c.key == drive_label[0], driver.c.value == drive_label[1]]
    filters += _index_filters(query, c.run_id, skip=drive_label)
    sort_column: ColumnElement[Any]
    id_column: ColumnElement[str]
    if metric is not None:
        sorted_by = run_metrics_table.alias("sort_metric")
        source = sorted_by.join(source, sorted_by.c.run_id == c.run_id)
        filters.append(sorted_by.c.key == metric)
        sort_column, id_column = sorted_by.c.value, sorted_by.c.run_id
    else:
        sort_column = c.created_at if query.sort == "created_at" else c.updated_at
        id_column = c.run_id
    count_source: Any = source
    count_filters = filters
    if not run_filters and (labels or query.where or metric):
        # Only index conditions: counted from the index tables alone (their rows reference
        # runs that exist), without reading a row of ``runs``.
        if metric is not None:
            counter = run_metrics_table.alias("count_metric")
            count_filters = [counter.c.key == metric]
            skip = None
        elif labels:
            skip = drive_label or labels[0]
            counter = run_labels_table.alias("count_label")
            count_filters = [counter.c.key == skip[0], counter.c.value == skip[1]]
        else:
            skip = None
            assert query.where
            counter = run_metrics_table.alias("count_metric")
            count_filters = [counter.c.key == query.where[0].key]  # one row per run
        count_source = counter
        count_filters += _index_filters(query, counter.c.run_id, skip=skip)
    if query.count_limit is None:
        count_stmt = select(func.count()).select_from(count_source).where(*count_filters)
    else:
        matches: Select[Any] = (
            select(literal_column("1")).select_from(count_source).where(*count_filters)
        )
        capped = matches.limit(query.count_limit + 1).subquery()
        count_stmt = select(func.count()).select_from(capped)
    if query.cursor is not None:
        bound_value: Any
        if metric is not None:
            number, after_id = decode_metric_cursor(query.cursor)
            bound_value = literal(number, Float())
        else:
            moment, after_id = decode_run_cursor(query.cursor)
            bound_value = literal(moment, UtcTimestamp())
        # A row-value comparison, which both SQLite and PostgreSQL turn into an index range.
        position = tuple_(sort_column, id_column)
        bound = tuple_(bound_value, literal(after_id, c.run_id.type))
        filters.append(position < bound if query.descending else position > bound)
    if query.descending:
        order = (sort_column.desc(), id_column.desc())
    else:
        order = (sort_column.asc(), id_column.asc())
    page_stmt = (
        select(c.run_id, sort_column.label("sort_value"), c.body)
        .select_from(source)
        .where(*filters)
        .order_by(*order)
        .limit(query.limit + 1)
    )
    return count_stmt, page_stmt


def status_count_statement(
    query: RunQuery, *, drive_label: tuple[str, str] | None = None
) -> Select[Any]:
    """(status, count) rows of the runs matching ``query`` but its status and cursor, over at
    most ``query.count_limit + 1`` matches read in no particular order (one pass, not one
    count per status). ``drive_label`` (one of ``query.labels``, the rarest) is joined, so
    the matches are read from the label index: at most count_limit + 1 label rows and as
    many runs by key, however common the label is."""
    c = runs_table.c
    filters = _run_filters(query.model_copy(update={"status": None}))
    source: Any = runs_table
    if drive_label is not None:
        driver = run_labels_table.alias("drive")
        source = driver.join(runs_table, driver.c.run_id == c.run_id)
        filters += [driver.c.key == drive_label[0], driver.c.value == drive_label[1]]
    filters += _index_filters(query, c.run_id, skip=drive_label)
    if query.sort_metric is not None:  # as the page and its total: runs with the metric
        sorted_by = run_metrics_table.alias("sort_metric")
        source = sorted_by.join(source, sorted_by.c.run_id == c.run_id)
        filters.append(sorted_by.c.key == query.sort_metric)
    matches: Select[Any] = select(c.status).select_from(source).where(*filters)
    if query.count_limit is not None:
        matches = matches.limit(query.count_limit + 1)
    read = matches.subquery()
    return select(read.c.status, func.count()).group_by(read.c.status)


def _index_filters(
    query: RunQuery, run_id: ColumnElement[str], *, skip: tuple[str, str] | None
) -> list[ColumnElement[bool]]:
    """EXISTS checks of the query's labels (but ``skip``) and metric conditions, each on its
    own alias of ``run_labels`` / ``run_metrics`` correlated to ``run_id``."""
    filters: list[ColumnElement[bool]] = []
    for n, (key, value) in enumerate(sorted((query.labels or {}).items())):
        if (key, value) == skip:
            continue
        label = run_labels_table.alias(f"label{n}")
        filters.append(
            exists().where(label.c.run_id == run_id, label.c.key == key, label.c.value == value)
        )
    for n, condition in enumerate(query.where or []):
        held = run_metrics_table.alias(f"where{n}")
        filters.append(
            exists().where(
                held.c.run_id == run_id,
                held.c.key == condition.key,
                _compare(held.c.value, condition.op, condition.value),
            )
        )
    return filters


def _compare(column: ColumnElement[float], op: str, value: float) -> ColumnElement[bool]:
    bound = literal(value, Float())
    match op:
        case "<":
            return column < bound
        case "<=":
            return column <= bound
        case ">":
            return column > bound
        case ">=":
            return column >= bound
        case "==":
            return column == bound
        case _:
            return column != bound


def label_match_probe(key: str, value: str) -> Select[int]:
    """How many runs carry label ``key=value``, counted up to `LABEL_DRIVE_LIMIT` + 1 from
    the label index alone."""
    t = run_labels_table.c
    matches = (
        select(literal_column("1"))
        .select_from(run_labels_table)
        .where(t.key == key, t.value == value)
        .limit(LABEL_DRIVE_LIMIT + 1)
        .subquery()
    )
    return select(func.count()).select_from(matches)


def has_run_filters(query: RunQuery) -> bool:
    """Whether ``query`` filters on columns of ``runs`` (not only labels and metrics)."""
    return bool(_run_filters(query))


def _run_filters(query: RunQuery) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if query.status is not None:
        filters.append(runs_table.c.status.in_([status.value for status in query.status]))
    if query.project is not None:
        filters.append(runs_table.c.project == query.project)
    if query.playbook_id is not None:
        filters.append(runs_table.c.playbook_id == query.playbook_id)
    if query.actor is not None:
        filters.append(runs_table.c.actor == query.actor)
    if query.previous_run_id is not None:
        filters.append(runs_table.c.previous_run_id == query.previous_run_id)
    if query.created_after is not None:
        filters.append(runs_table.c.created_at >= query.created_after)
    if query.created_before is not None:
        filters.append(runs_table.c.created_at < query.created_before)
    if query.updated_after is not None:
        filters.append(runs_table.c.updated_at >= query.updated_after)
    if query.updated_before is not None:
        filters.append(runs_table.c.updated_at < query.updated_before)
    if query.purpose_contains is not None:
        # autoescape: '%' and '_' in the needle match themselves. Case folding is
        # ASCII-only on SQLite (its lower()), full Unicode on PostgreSQL.
        filters.append(runs_table.c.purpose.icontains(query.purpose_contains, autoescape=True))
    return filters


_RUN_LABELS: Final = select(run_labels_table.c.key, run_labels_table.c.value).where(
    run_labels_table.c.run_id == bindparam("run_id")
)
_RUN_METRICS: Final = select(run_metrics_table.c.key, run_metrics_table.c.value).where(
    run_metrics_table.c.run_id == bindparam("run_id")
)


def sync_index(conn: Connection, run: Run, *, new: bool) -> None:
    """Make the run's rows of ``run_labels`` and ``run_metrics`` match its body: rows that
    changed are deleted and inserted again; a run whose labels and metrics did not change
    costs two index reads and writes nothing (no DELETE privilege needed for it)."""
    for table, read, wanted in (
        (run_labels_table, _RUN_LABELS, run.labels),
        (run_metrics_table, _RUN_METRICS, run.metrics),
    ):
        held: dict[str, Any] = (
            {} if new else {row[0]: row[1] for row in conn.execute(read, {"run_id": run.run_id})}
        )
        stale = [key for key, value in held.items() if wanted.get(key) != value]
        fresh = [key for key, value in wanted.items() if held.get(key) != value]
        if stale:
            conn.execute(delete(table).where(table.c.run_id == run.run_id, table.c.key.in_(stale)))
        if fresh:
            conn.execute(
                insert(table),
                [{"run_id": run.run_id, "key": key, "value": wanted[key]} for key in fresh],
            )
