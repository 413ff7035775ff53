"""Runs and what hangs off a run: run records, snapshots and artifacts (with their tags);
the run index's statements live in `strongroom.adapters._sql.run_index`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    Column,
    Select,
    bindparam,
    exists,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection

from strongroom.adapters._cursor import (
    capped_total,
    encode_metric_cursor,
    encode_run_cursor,
    status_counts_of,
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
from strongroom.adapters._sql.run_index import (
    LABEL_DRIVE_LIMIT,
    has_run_filters,
    label_match_probe,
    run_index_statements,
    status_count_statement,
    sync_index,
)
from strongroom.adapters._sql.run_stats import read_run_stats
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
    RunStats,
    RunStatsQuery,
    RunStatusCounts,
    SnapshotRecord,
    bind,
    stored_body,
)

__all__ = ["RunRecords"]


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
        "previous_run_id": run.previous_run_id,
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
            sync_index(conn, run, new=True)

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
                sync_index(conn, stored, new=False)
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

    async def count_runs_by_status(self, query: RunQuery) -> RunStatusCounts:
        def op(conn: Connection) -> list[AnyRow]:
            drive: tuple[str, str] | None = None
            if query.labels:
                # From the rarest label's index rows when they bound what is read: a rare
                # label, or a label with no other filter (the first count_limit + 1 rows
                # all match). A common label beside a run filter (a project) is checked
                # per run of that filter's index range instead.
                counts = {
                    pair: int(conn.scalar(label_match_probe(*pair)) or 0)
                    for pair in sorted(query.labels.items())
                }
                rarest = min(counts, key=lambda pair: counts[pair])
                alone = not has_run_filters(query.model_copy(update={"status": None}))
                if alone or counts[rarest] <= LABEL_DRIVE_LIMIT:
                    drive = rarest
            return list(conn.execute(status_count_statement(query, drive_label=drive)).all())

        rows = await self._read("count_runs_by_status", op)
        return status_counts_of({str(row[0]): int(row[1]) for row in rows}, query.count_limit)

    async def run_stats(self, query: RunStatsQuery) -> RunStats:
        return await self._read("run_stats", lambda conn: read_run_stats(conn, query))

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
            blobs=[record.sha256],
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
            blobs=[a.sha256 for a in artifacts],
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
