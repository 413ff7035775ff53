"""Runs and what hangs off a run: the run index, snapshots and artifacts (with their tags).

Run index: one composite index per common filter, each ending in the sort key, and keyset
pagination on (sort column, run_id) with the cursor of `strongroom.adapters._cursor`. Time
filters are half-open: ``*_after`` is inclusive, ``*_before`` exclusive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    Column,
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
    update,
)
from sqlalchemy.engine import Connection

from strongroom.adapters._cursor import (
    capped_total,
    decode_metric_cursor,
    decode_run_cursor,
    encode_metric_cursor,
    encode_run_cursor,
)
from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import (
    PAGE_SIZE,
    AnyRow,
    Operation,
    fetch_all,
    fetch_scalar,
    parse_body,
)
from strongroom.adapters._sql.columns import UtcTimestamp
from strongroom.adapters._sql.tables import (
    artifact_tags_table,
    artifacts_table,
    run_labels_table,
    run_metrics_table,
    runs_table,
    snapshots_table,
)
from strongroom.errors import Conflict
from strongroom.models import (
    ArtifactMetadata,
    ArtifactQuery,
    AuditEvent,
    RecordBinding,
    Run,
    RunPage,
    RunQuery,
    SnapshotRecord,
    bind,
    stored_body,
)

__all__ = ["LABEL_DRIVE_LIMIT", "RunRecords", "label_match_probe", "run_index_statements"]


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


def _sync_index(conn: Connection, run: Run, *, new: bool) -> None:
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


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "project": run.project,
        "playbook_id": run.playbook.playbook_id if run.playbook is not None else None,
        "actor": run.actor,
        "status": run.status.value,
        "purpose": run.purpose,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "version": run.version,
        "body": stored_body(run),
    }


def _snapshot_row(record: SnapshotRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "revision": record.revision,
        "sha256": record.sha256,
        "size_bytes": record.size_bytes,
        "created_at": record.created_at,
        "body": stored_body(record),
    }


def _artifact_row(artifact: ArtifactMetadata) -> dict[str, Any]:
    return {
        "artifact_id": artifact.artifact_id,
        "run_id": artifact.run_id,
        "role": artifact.role.value,
        "phase": artifact.phase,
        "step": artifact.step,
        "namespace": artifact.namespace,
        "sha256": artifact.sha256,
        "size_bytes": artifact.size_bytes,
        "created_at": artifact.created_at,
        "body": stored_body(artifact),
    }


# column -> `SELECT column WHERE column = :value`, built once: one artifact per call is the
# common case, and an expanding IN costs a fresh compilation on every execution.
_ONE_EXISTS: dict[Column[str], Select[str]] = {}


def _existing(conn: Connection, column: Column[str], values: Sequence[str]) -> set[str]:
    """Which of ``values`` are present in ``column`` (in chunks: SQL has parameter limits)."""
    if len(values) == 1:
        stmt = _ONE_EXISTS.get(column)
        if stmt is None:
            stmt = _ONE_EXISTS[column] = select(column).where(column == bindparam("value"))
        return set(conn.execute(stmt, {"value": values[0]}).scalars())
    found: set[str] = set()
    for start in range(0, len(values), PAGE_SIZE):
        chunk = values[start : start + PAGE_SIZE]
        result = conn.execute(select(column).where(column.in_(chunk)))
        found.update(result.scalars())
    return found


# The hot paths' statements, built once (see `fetch_scalar`).
_INSERT_RUN: Final = insert(runs_table)
_GET_RUN: Final = select(runs_table.c.body).where(runs_table.c.run_id == bindparam("run_id"))
_INSERT_SNAPSHOT: Final = insert(snapshots_table)
_SNAPSHOT_EXISTS: Final = select(literal(1)).where(
    snapshots_table.c.run_id == bindparam("run_id"),
    snapshots_table.c.revision == bindparam("revision"),
)
_LATEST_SNAPSHOT: Final = (
    select(snapshots_table.c.body)
    .where(snapshots_table.c.run_id == bindparam("run_id"))
    .order_by(snapshots_table.c.revision.desc())
    .limit(1)
)
_SNAPSHOT_AT: Final = select(snapshots_table.c.body).where(
    snapshots_table.c.run_id == bindparam("run_id"),
    snapshots_table.c.revision == bindparam("revision"),
)


class RunRecords(AuditRecords):
    """The run, snapshot and artifact methods of `SqlMetadataStore`."""

    async def insert_run(self, run: Run, *, audit: AuditEvent | None = None) -> None:
        row = _run_row(run)

        def op(conn: Connection) -> None:
            conn.execute(_INSERT_RUN, row)
            _sync_index(conn, run, new=True)

        await self._write_bound(
            "insert_run", op, audit, [bind(run, row["body"])], run_id=run.run_id
        )

    async def get_run(self, run_id: str) -> Run:
        body = await self._read(
            "get_run", fetch_scalar(_GET_RUN, {"run_id": run_id}), run_id=run_id
        )
        if body is None:
            raise self._not_found("get_run", f"no run {run_id}", run_id=run_id)
        return parse_body(Run, body, "run", run_id)

    async def update_run(
        self, run: Run, *, expected_version: int, audit: AuditEvent | None = None
    ) -> Run:
        stored, binding, op = self._update_run_op(run, expected_version)
        await self._write_bound(
            "update_run", op, audit, [binding], log_run=run.run_id, run_id=run.run_id
        )
        return stored

    def _update_run_op(
        self, run: Run, expected_version: int
    ) -> tuple[Run, RecordBinding, Operation[None]]:
        """The stored run, its binding and the statements of `update_run` (for one
        transaction of several)."""
        stored = run.model_copy(update={"version": expected_version + 1})
        row = _run_row(stored)
        del row["run_id"]
        binding = bind(stored, row["body"])

        def op(conn: Connection) -> None:
            result = conn.execute(
                update(runs_table)
                .where(runs_table.c.run_id == run.run_id, runs_table.c.version == expected_version)
                .values(row)
            )
            if result.rowcount == 1:
                _sync_index(conn, stored, new=False)
                return
            actual = conn.scalar(
                select(runs_table.c.version).where(runs_table.c.run_id == run.run_id)
            )
            if actual is None:
                raise self._not_found("update_run", f"no run {run.run_id}", run_id=run.run_id)
            raise Conflict(
                f"run {run.run_id} is at version {actual}, not {expected_version}: "
                "it was changed by someone else; reload it and retry",
                operation="update_run",
                backend=self.backend,
                reason="stale_version",
                run_id=run.run_id,
                expected_version=expected_version,
                actual_version=actual,
            )

        return stored, binding, op

    async def query_runs(self, query: RunQuery) -> RunPage:
        run_index_statements(query)  # a bad cursor is refused before any read

        def op(conn: Connection) -> tuple[int, list[AnyRow]]:
            # One read transaction: the total and the page see the same snapshot.
            drive: tuple[str, str] | None = None
            if query.labels and query.sort_metric is None:
                # The rarest label drives the page when few runs carry it.
                counts = {
                    pair: int(conn.scalar(label_match_probe(*pair)) or 0)
                    for pair in sorted(query.labels.items())
                }
                rarest = min(counts, key=lambda pair: counts[pair])
                if counts[rarest] <= LABEL_DRIVE_LIMIT:
                    drive = rarest
            count_stmt, page_stmt = run_index_statements(query, drive_label=drive)
            total = conn.scalar(count_stmt)
            rows = conn.execute(page_stmt).all()
            return int(total or 0), list(rows)

        counted, rows = await self._read("query_runs", op)
        page = rows[: query.limit]
        items = [parse_body(Run, row.body, "run", row.run_id) for row in page]
        next_cursor = None
        if len(rows) > query.limit:
            # From the indexed columns, not the body: the cursor must match what is compared.
            last = page[-1]
            if query.sort_metric is not None:
                next_cursor = encode_metric_cursor(last.sort_value, last.run_id)
            else:
                next_cursor = encode_run_cursor(last.sort_value, last.run_id)
        total, exact = capped_total(counted, query.count_limit)
        return RunPage(items=items, total=total, total_is_exact=exact, next_cursor=next_cursor)

    # -- snapshots --------------------------------------------------------------------------

    async def insert_snapshot(
        self, record: SnapshotRecord, *, audit: AuditEvent | None = None
    ) -> None:
        row = _snapshot_row(record)

        def op(conn: Connection) -> None:
            conn.execute(_INSERT_SNAPSHOT, row)

        await self._write_bound(
            "insert_snapshot",
            op,
            audit,
            [bind(record, row["body"])],
            run_id=record.run_id,
            revision=record.revision,
        )

    def _insert_snapshot_op(self, record: SnapshotRecord) -> tuple[RecordBinding, Operation[None]]:
        """`insert_snapshot` inside a larger transaction, and its binding: an existing
        revision is refused by name (``stale_revision``) before the insert, so the caller can
        tell which part of the transaction lost; the unique key still decides a race."""
        row = _snapshot_row(record)

        def op(conn: Connection) -> None:
            if conn.scalar(_SNAPSHOT_EXISTS, row) is not None:
                raise Conflict(
                    f"snapshot revision {record.revision} of run {record.run_id} exists",
                    operation="insert_snapshot",
                    backend=self.backend,
                    reason="stale_revision",
                    run_id=record.run_id,
                    revision=record.revision,
                )
            conn.execute(_INSERT_SNAPSHOT, row)

        return bind(record, row["body"]), op

    async def get_snapshot(self, run_id: str, revision: int | None = None) -> SnapshotRecord:
        if revision is None:
            fetch = fetch_scalar(_LATEST_SNAPSHOT, {"run_id": run_id})
        else:
            fetch = fetch_scalar(_SNAPSHOT_AT, {"run_id": run_id, "revision": revision})

        body = await self._read("get_snapshot", fetch, run_id=run_id, revision=revision)
        if body is None:
            which = "any snapshot" if revision is None else f"snapshot revision {revision}"
            raise self._not_found(
                "get_snapshot", f"run {run_id} has no {which}", run_id=run_id, revision=revision
            )
        return parse_body(SnapshotRecord, body, "snapshot", f"{run_id}@{revision or 'latest'}")

    async def list_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        stmt = (
            select(snapshots_table.c.revision, snapshots_table.c.body)
            .where(snapshots_table.c.run_id == run_id)
            .order_by(snapshots_table.c.revision)
        )

        rows = await self._read("list_snapshots", fetch_all(stmt), run_id=run_id)
        return [
            parse_body(SnapshotRecord, row.body, "snapshot", f"{run_id}@{row.revision}")
            for row in rows
        ]

    # -- artifacts --------------------------------------------------------------------------

    async def insert_artifacts(
        self, artifacts: Sequence[ArtifactMetadata], *, audit: AuditEvent | None = None
    ) -> None:
        if not artifacts:
            return
        rows = [_artifact_row(artifact) for artifact in artifacts]
        tag_rows = [
            {"artifact_id": artifact.artifact_id, "tag": tag}
            for artifact in artifacts
            for tag in dict.fromkeys(artifact.tags)
        ]
        ids = [artifact.artifact_id for artifact in artifacts]
        run_ids = sorted({artifact.run_id for artifact in artifacts})

        def op(conn: Connection) -> None:
            # Checked first so that the error names every failing item (the constraints
            # below stay the guarantee, e.g. against a concurrent writer on PostgreSQL).
            taken = _existing(conn, artifacts_table.c.artifact_id, ids)
            duplicates = sorted(taken | {i for i, n in Counter(ids).items() if n > 1})
            if duplicates:
                raise Conflict(
                    f"insert_artifacts: {len(duplicates)} artifact id(s) already exist",
                    operation="insert_artifacts",
                    backend=self.backend,
                    reason="duplicate_id",
                    items=duplicates,
                )
            missing = sorted(set(run_ids) - _existing(conn, runs_table.c.run_id, run_ids))
            if missing:
                raise self._not_found(
                    "insert_artifacts",
                    f"insert_artifacts: {len(missing)} run(s) do not exist",
                    reason="unknown_run",
                    items=missing,
                )
            conn.execute(insert(artifacts_table), rows)
            if tag_rows:
                conn.execute(insert(artifact_tags_table), tag_rows)

        await self._write_bound(
            "insert_artifacts",
            op,
            audit,
            [bind(a, row["body"]) for a, row in zip(artifacts, rows, strict=True)],
            artifact_id=ids[0] if len(ids) == 1 else None,
        )

    async def get_artifact(self, artifact_id: str) -> ArtifactMetadata:
        stmt = select(artifacts_table.c.body).where(artifacts_table.c.artifact_id == artifact_id)
        body = await self._read("get_artifact", fetch_scalar(stmt), artifact_id=artifact_id)
        if body is None:
            raise self._not_found(
                "get_artifact", f"no artifact {artifact_id}", artifact_id=artifact_id
            )
        return parse_body(ArtifactMetadata, body, "artifact", artifact_id)

    async def list_artifacts(self, query: ArtifactQuery) -> list[ArtifactMetadata]:
        c = artifacts_table.c
        stmt = select(c.artifact_id, c.body)
        if query.run_id is not None:
            stmt = stmt.where(c.run_id == query.run_id)
        if query.role is not None:
            stmt = stmt.where(c.role == query.role.value)
        if query.phase is not None:
            stmt = stmt.where(c.phase == query.phase)
        if query.step is not None:
            stmt = stmt.where(c.step == query.step)
        if query.namespace is not None:
            stmt = stmt.where(c.namespace == query.namespace)
        if query.tag is not None:
            stmt = stmt.where(
                exists().where(
                    artifact_tags_table.c.artifact_id == c.artifact_id,
                    artifact_tags_table.c.tag == query.tag,
                )
            )
        if query.after_id is not None:
            stmt = stmt.where(c.artifact_id > query.after_id)
        stmt = stmt.order_by(c.artifact_id).limit(query.limit)

        rows = await self._read("list_artifacts", fetch_all(stmt), run_id=query.run_id)
        return [parse_body(ArtifactMetadata, row.body, "artifact", row.artifact_id) for row in rows]
