"""Runs and what hangs off a run: the run index, snapshots and artifacts (with their tags).

Run index: one composite index per common filter, each ending in the sort key, and keyset
pagination on (sort column, run_id) with the cursor of `strongroom.adapters._cursor`. Time
filters are half-open: ``*_after`` is inclusive, ``*_before`` exclusive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    bindparam,
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

from strongroom.adapters._cursor import capped_total, decode_run_cursor, encode_run_cursor
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

__all__ = ["RunRecords", "run_index_statements"]


def run_index_statements(query: RunQuery) -> tuple[Select[int], Select[str, datetime, str]]:
    """The COUNT (filters only) and the page SELECT (filters + keyset + limit+1) of a query.

    With ``query.count_limit`` the COUNT is capped: it counts the rows of
    ``SELECT 1 ... LIMIT count_limit + 1``, so the database stops reading after that many
    matches (more than ``count_limit`` = "count_limit+"); without it, an exact
    ``SELECT count(*) ... WHERE``. Both are answered from one composite index when the
    filters match its prefix, e.g. status + project -> ``ix_runs_status_project_created``.
    A bad cursor -> `ValidationError`.
    """
    c = runs_table.c
    sort_column = c.created_at if query.sort == "created_at" else c.updated_at
    filters = _run_filters(query)
    if query.count_limit is None:
        count_stmt = select(func.count()).select_from(runs_table).where(*filters)
    else:
        matches: Select[Any] = select(literal_column("1")).select_from(runs_table).where(*filters)
        capped = matches.limit(query.count_limit + 1).subquery()
        count_stmt = select(func.count()).select_from(capped)
    if query.cursor is not None:
        value, after_id = decode_run_cursor(query.cursor)
        # A row-value comparison, which both SQLite and PostgreSQL turn into an index range.
        position = tuple_(sort_column, c.run_id)
        bound = tuple_(literal(value, UtcTimestamp()), literal(after_id, c.run_id.type))
        filters.append(position < bound if query.descending else position > bound)
    if query.descending:
        order = (sort_column.desc(), c.run_id.desc())
    else:
        order = (sort_column.asc(), c.run_id.asc())
    page_stmt = (
        select(c.run_id, sort_column.label("sort_value"), c.body)
        .where(*filters)
        .order_by(*order)
        .limit(query.limit + 1)
    )
    return count_stmt, page_stmt


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
        count_stmt, page_stmt = run_index_statements(query)

        def op(conn: Connection) -> tuple[int, list[AnyRow]]:
            # One read transaction: the total and the page see the same snapshot.
            total = conn.scalar(count_stmt)
            rows = conn.execute(page_stmt).all()
            return int(total or 0), list(rows)

        counted, rows = await self._read("query_runs", op)
        page = rows[: query.limit]
        items = [parse_body(Run, row.body, "run", row.run_id) for row in page]
        next_cursor = None
        if len(rows) > query.limit:
            # From the indexed columns, not the body: the cursor must match what is compared.
            next_cursor = encode_run_cursor(page[-1].sort_value, page[-1].run_id)
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
