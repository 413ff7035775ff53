"""verify's record checks on SQL, one read of each record for all of them.

Each stored record is checked against the copies of its fields kept as columns for indexing
(and, for artifacts, the tag index) and against the digest its newest audit binding carries;
then every record the chain says exists must still be there, every log head the chain carried
must still be in the log, and every channel pointer must be what its move set.

A record is stored as its canonical JSON (`stored_body`), so its digest is the sha256 of the
stored text: when that is the digest of the record's newest binding, the body is exactly what
strongroom wrote and bound, and only the columns remain to be compared, from the parsed JSON.
Anything else (a body that differs, one stored in another form by an older version, a column
that disagrees) takes the slow path: the body is validated as its model, its digest recomputed
and the columns compared with the model's fields, so the fast path only ever skips work whose
answer is already proven.

Memory is bounded whatever the content: tables are read in keyset pages of at most
`PAGE_SIZE` rows and `PAGE_CHARS` body characters, and a body over `MAX_RECORD_CHARS` is
reported without being read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, Final, cast

from pydantic import BaseModel
from pydantic_core import from_json
from sqlalchemy import Column, Select, String, case, func, literal, select, tuple_, type_coerce
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.base import (
    MAX_RECORD_CHARS,
    PAGE_SIZE,
    AnyRow,
    fetch_all,
    parse_body,
    rows_within_budget,
)
from strongroom.adapters._sql.binding_check import (
    BOUND,
    BindingChecks,
    Bound,
    Newest,
    as_latest,
    newest_join,
)
from strongroom.adapters._sql.columns import UtcTimestamp
from strongroom.adapters._sql.registry_tables import (
    approvals_table,
    channel_moves_table,
    channel_pointers_table,
)
from strongroom.adapters._sql.tables import artifact_tags_table, artifacts_table
from strongroom.errors import IntegrityError
from strongroom.models import (
    ArtifactMetadata,
    BoundRecord,
    ChannelMove,
    Run,
    VerifyProblem,
    binding_id,
    record_digest_as,
)
from strongroom.ports.metadata import ReferenceSink
from strongroom.ports.verify import binding_problem

__all__ = ["RecordChecks"]


_HEX64: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class _Plan:
    """How the columns of a bound table are compared with its records. Rows are read as
    `RecordChecks._read_page` selects them: every column but ``body`` in table order, then
    ``body`` and ``chars``; ``*_at`` are positions in such a row."""

    spec: Bound
    compared: tuple[tuple[int, str], ...]  # columns copying a field (or a property) of it
    from_json: tuple[tuple[int, str], ...]  # (at, column) compared with the JSON's value
    times: tuple[tuple[int, str], ...]  # (at, column) timestamps compared with the JSON's
    time_at: frozenset[int]  # where the timestamps are
    # the `from_json` values of a parsed body, and of a row (None: no such column)
    json_values: Callable[[Any], Any] | None
    row_values: Callable[[Any], Any]
    needs_model: bool  # some column copies a property or a nested field: use the model
    key_at: tuple[int, ...]
    body_at: int


def _run_playbook_id(run: Run) -> str | None:
    return None if run.playbook is None else run.playbook.playbook_id


# Columns that copy a nested field: (table, column) -> the value from the record.
_DERIVED: Final[dict[tuple[str, str], Callable[[Any], Any]]] = {
    ("runs", "playbook_id"): _run_playbook_id,
}


def _plan(spec: Bound) -> _Plan:
    model = spec.model
    names = [c.name for c in spec.table.columns if c.name != "body"]
    compared: list[tuple[int, str]] = []
    plain: list[tuple[int, str]] = []
    times: list[tuple[int, str]] = []
    needs_model = False
    for at, name in enumerate(names):
        column = spec.table.c[name]
        if column.info.get("not_a_copy"):  # kept by the database about the row: no field
            continue
        if (spec.table.name, name) in _DERIVED:
            compared.append((at, name))
            needs_model = True
        elif name in model.model_fields:
            compared.append((at, name))
            (times if isinstance(column.type, UtcTimestamp) else plain).append((at, name))
        elif isinstance(getattr(model, name, None), property):
            compared.append((at, name))
            needs_model = True
        else:  # pragma: no cover - a new column must say how it is checked
            raise RuntimeError(f"{spec.table.name}.{name}: no check of this column")
    key_at = tuple(names.index(k) for k in spec.keys)
    return _Plan(
        spec,
        tuple(compared),
        tuple(plain),
        tuple(times),
        frozenset(at for at, _ in times),
        itemgetter(*(name for _, name in plain)) if plain else None,
        itemgetter(*(at for at, _ in plain)) if plain else _nothing,
        needs_model,
        key_at,
        len(names),
    )


def _nothing(row: Any) -> tuple[()]:
    return ()


def _same_columns(plan: _Plan, data: dict[str, Any], row: AnyRow) -> bool:
    """Whether every column of ``row`` that copies a field holds the value the record's
    parsed JSON ``data`` has (the fast path: no model)."""
    if plan.json_values is not None:
        try:
            if plan.json_values(data) != plan.row_values(row):
                return False
        except KeyError:
            return False  # a field is missing from the JSON
    return all(_same_time(data.get(name), row[at]) for at, name in plan.times)


def _copied(record: BaseModel, table: str, name: str) -> Any:
    derived = _DERIVED.get((table, name))
    return _normal(getattr(record, name) if derived is None else derived(record))


_PLANS: Final = tuple(_plan(spec) for spec in BOUND)


def _normal(value: Any) -> Any:
    """Compare enum members with their stored text."""
    return getattr(value, "value", value)


def _same_time(value: Any, stored: Any) -> bool:
    """A timestamp column against the record's JSON text of it. The column comes as SQLite
    stores it (ISO text with ``+00:00``, see `UtcTimestamp`), compared as text first (the
    JSON says ``Z``), or as a datetime (PostgreSQL)."""
    if not isinstance(value, str):
        return False
    if isinstance(stored, str):
        if value[-1:] == "Z" and value[:-1] + "+00:00" == stored:
            return True
        stored = _as_time(stored)
    if not isinstance(stored, datetime):
        return False
    try:
        return datetime.fromisoformat(value) == stored
    except ValueError:
        return False


def _as_time(stored: Any) -> Any:
    """A timestamp column's raw SQLite text as `UtcTimestamp` reads it (None: no timestamp,
    a hand edit); anything else as it is."""
    if not isinstance(stored, str):
        return stored
    try:
        return datetime.fromisoformat(stored)
    except ValueError:
        return None


def _check_tags(
    problems: list[VerifyProblem], artifact_id: str, tags: Any, tagged: dict[str, set[str]]
) -> None:
    found = tagged[str(artifact_id)]
    expected = set(tags)
    if expected != found:
        problems.append(_tag_problem(str(artifact_id), expected, found))


@dataclass
class _PageResult:
    problems: list[VerifyProblem] = field(default_factory=list)
    matched: int = 0  # records whose digest is their live binding's
    references: list[tuple[str, str, str, int]] = field(default_factory=list)
    last: tuple[Any, ...] | None = None  # key of the last row read (None: no rows)


def _oversized(spec: Bound, subject: str, chars: int) -> VerifyProblem:
    return VerifyProblem(
        kind=spec.problem_kind,
        code="integrity_error",
        subject=subject,
        message=f"stored {spec.problem_kind} {subject} is {chars} characters long, over the "
        f"{MAX_RECORD_CHARS} verify reads: the row was edited",
        details={"reason": "oversized_record", "chars": chars},
    )


def _invalid(spec: Bound, subject: str, exc: IntegrityError) -> VerifyProblem:
    return VerifyProblem(
        kind=spec.problem_kind,
        code=exc.code,
        subject=subject,
        message=exc.message,
        details=exc.details,
    )


def _contradiction(spec: Bound, subject: str, differing: list[str]) -> VerifyProblem:
    return VerifyProblem(
        kind=spec.problem_kind,
        code="integrity_error",
        subject=subject,
        message=f"stored {spec.problem_kind} {subject} contradicts itself: "
        f"{', '.join(differing)} differ between the record and its index columns "
        "(the row was edited)",
        details={"fields": differing},
    )


# Tag rows read for one page of artifacts, at most: far above what real artifacts carry.
_PAGE_TAG_ROWS: Final = 100_000


def _tag_flood(first: str, last: str) -> VerifyProblem:
    return VerifyProblem(
        kind="artifact",
        code="integrity_error",
        subject=first,
        message=f"the tag index holds more than {_PAGE_TAG_ROWS} rows for artifacts {first} "
        f"to {last} (the index was edited)",
        details={"reason": "oversized_tag_index", "last": last},
    )


def _tag_problem(artifact_id: str, expected: set[str], found: set[str]) -> VerifyProblem:
    return VerifyProblem(
        kind="artifact",
        code="integrity_error",
        subject=artifact_id,
        message=f"the tag index of artifact {artifact_id} differs from its record's tags "
        "(the index was edited)",
        details={"expected": sorted(expected), "found": sorted(found)},
    )


class RecordChecks(BindingChecks):
    """`iter_record_problems`, `iter_binding_problems`, `iter_all_record_problems` and
    `iter_blob_references` of `SqlMetadataStore`."""

    # -- reading pages ----------------------------------------------------------------------

    @staticmethod
    def _read_page(
        conn: Connection, spec: Bound, after: tuple[Any, ...] | None, *, bindings: bool = False
    ) -> list[AnyRow]:
        """The next rows of ``spec.table`` after ``after`` in key order: at most `PAGE_SIZE`
        rows and (past the first) `PAGE_CHARS` body characters; a body over
        `MAX_RECORD_CHARS` comes back as None (with its length in ``chars``). With
        ``bindings``, each row also carries the newest binding of the id it claims
        (`_NEWEST_AT` on: its audit seq, digest and log seq, all None when never bound),
        looked up by the database in the binding index as it reads the row."""
        table = spec.table
        keys: list[Column[Any]] = [table.c[k] for k in spec.keys]
        chars = func.length(table.c.body)

        def keyed(stmt: Select[Any]) -> Select[Any]:
            stmt = stmt.order_by(*keys)
            if after is None:
                return stmt
            bound = [literal(v, k.type) for v, k in zip(after, keys, strict=True)]
            return stmt.where(tuple_(*keys) > tuple_(*bound))

        # At most PAGE_SIZE small integers: read at once.
        sizes = conn.execute(keyed(select(chars.label("chars")).limit(PAGE_SIZE))).scalars()
        count = rows_within_budget(sizes.all())
        if count == 0:
            return []
        sqlite = conn.dialect.name == "sqlite"
        capped = case((chars > MAX_RECORD_CHARS, None), else_=table.c.body)
        columns: list[Any] = [
            # Timestamps as stored (`_same_time` compares the text): no datetime per row.
            type_coerce(c, String) if sqlite and isinstance(c.type, UtcTimestamp) else c
            for c in table.columns
            if c.name != "body"
        ]
        columns += [capped.label("body"), chars.label("chars")]
        stmt = select(*columns)
        if bindings:
            joined, newest = newest_join(spec, conn.dialect.name)
            stmt = select(*columns, *newest).select_from(joined)
        return list(conn.execute(keyed(stmt.limit(count))).all())

    # -- one table ---------------------------------------------------------------------------

    def _check_page(
        self,
        conn: Connection,
        plan: _Plan,
        after: tuple[Any, ...] | None,
        *,
        columns: bool,
        bindings: bool,
        references: bool = False,
    ) -> _PageResult:
        spec = plan.spec
        blob_column = spec.blob_column if references else None
        rows = self._read_page(conn, spec, after, bindings=bindings)
        out = _PageResult()
        if not rows:
            return out
        out.last = tuple(rows[-1][i] for i in plan.key_at)
        idents = [spec.ident_of(r) for r in rows]
        latest: dict[str, Newest] = {}
        if bindings:
            at = plan.body_at + 2
            for row, ident in zip(rows, idents, strict=True):
                if row[at] is not None:
                    latest[ident] = (int(row[at]), row[at + 1], row[at + 2])
        tagged: dict[str, set[str]] | None = None
        if columns and spec.table is artifacts_table:
            tagged = {str(r.artifact_id): set() for r in rows}
            t = artifact_tags_table.c
            # The page is a range of artifact ids: its tags are that range of the index (a
            # tag row of an artifact that does not exist is reported by `_orphan_tags`).
            first, last = str(rows[0].artifact_id), str(rows[-1].artifact_id)
            query = (
                select(t.artifact_id, t.tag)
                .where(t.artifact_id >= first, t.artifact_id <= last)
                .limit(_PAGE_TAG_ROWS + 1)
            )
            tag_rows = conn.execute(query).all()
            if len(tag_rows) > _PAGE_TAG_ROWS:
                # More tag rows than any page of real artifacts carries: planted rows. Named,
                # and this page's tags are not compared (memory stays bounded).
                out.problems.append(_tag_flood(first, last))
                tagged = None
            for artifact_id, tag in tag_rows if tagged is not None else ():
                tags = tagged.get(artifact_id) if tagged is not None else None
                if tags is not None:
                    tags.add(tag)
        slow: list[tuple[str, BoundRecord]] = []  # (binding id, record) checked after the loop
        problems = out.problems
        body_at = plan.body_at
        # Each row's body as parsed JSON where the loop parsed it (for the blob references).
        parsed: list[Any] = [None] * len(rows)
        for index, (row, ident) in enumerate(zip(rows, idents, strict=True)):
            body = row[body_at]
            if body is None:
                problems.append(_oversized(spec, spec.subject_of(row), int(row.chars)))
                continue
            authentic = False
            if bindings:
                newest = latest.get(ident)
                if newest is not None and newest[1] is not None:
                    authentic = hashlib.sha256(body.encode("utf-8")).hexdigest() == newest[1]
            if authentic:
                out.matched += 1
                if not columns:
                    continue
            if authentic and not plan.needs_model:
                data = parsed[index] = from_json(body)
                if _same_columns(plan, data, row):
                    if tagged is not None:
                        _check_tags(problems, row.artifact_id, data["tags"], tagged)
                    continue
            # The slow path: the body differs from its binding (or is in an older form), a
            # column seems to differ, or a column copies a property: the model decides.
            subject = spec.subject_of(row)
            try:
                record = parse_body(spec.model, body, spec.problem_kind, subject)
            except IntegrityError as exc:
                if columns:
                    problems.append(_invalid(spec, subject, exc))
                continue
            if bindings and not authentic:
                bound = cast(BoundRecord, record)
                slow.append((binding_id(bound)[1], bound))
            if not columns:
                continue
            differing = [
                name
                for at, name in plan.compared
                if _copied(record, spec.table.name, name)
                != _normal(_as_time(row[at]) if at in plan.time_at else row[at])
            ]
            if differing:
                problems.append(_contradiction(spec, subject, sorted(differing)))
            if tagged is not None:
                _check_tags(problems, row.artifact_id, cast(ArtifactMetadata, record).tags, tagged)
        if blob_column is not None:
            kind = spec.kind
            subjects = (
                idents if spec.subject_of is spec.ident_of else [spec.subject_of(r) for r in rows]
            )
            out.references = [
                (kind, subject, *_blob_of(row, blob_column, data))
                for row, subject, data in zip(rows, subjects, parsed, strict=True)
            ]
        if slow:
            unknown = [ident for ident, _ in slow if ident not in latest]
            latest.update(self._newest(conn, spec.kind, unknown))
            for ident, bound in slow:
                newest = latest.get(ident)
                found = None if newest is None else as_latest(spec.kind, ident, newest)
                digest = record_digest_as(bound, None if found is None else found[1].digest)
                problem = binding_problem(spec.kind, ident, digest, found)
                if problem is None:
                    out.matched += 1
                else:
                    problems.append(problem)
        return out

    async def _check_table(
        self,
        plan: _Plan,
        *,
        columns: bool,
        bindings: bool,
        references: ReferenceSink | None = None,
    ) -> AsyncIterator[VerifyProblem]:
        spec = plan.spec
        after: tuple[Any, ...] | None = None
        matched = 0
        operation = "iter_binding_problems" if bindings else "iter_record_problems"
        while True:

            def page(conn: Connection, after: tuple[Any, ...] | None = after) -> _PageResult:
                return self._check_page(
                    conn,
                    plan,
                    after,
                    columns=columns,
                    bindings=bindings,
                    references=references is not None,
                )

            result = await self._read(operation, page)
            matched += result.matched
            for problem in result.problems:
                yield problem
            if references is not None and result.references:
                await references(result.references)
            if result.last is None:
                break
            after = result.last
        if bindings:
            live = await self._read(operation, self._live_count(spec.kind))
            if live > matched:  # the chain names records that are gone: find them
                async for problem in self._missing(spec):
                    yield problem

    async def _check_records(
        self, *, columns: bool, bindings: bool, references: ReferenceSink | None = None
    ) -> AsyncIterator[VerifyProblem]:
        if columns:
            async for problem in self._pointer_problems():
                yield problem
        for plan in _PLANS:
            checks = self._check_table(
                plan, columns=columns, bindings=bindings, references=references
            )
            async for problem in checks:
                yield problem
        if columns:
            async for problem in self._orphan_tags():
                yield problem
            for problem in await self._read("iter_record_problems", _writer_problems):
                yield problem
        if bindings:
            async for problem in self._check_log_heads():
                yield problem

    # -- the port ----------------------------------------------------------------------------

    def iter_record_problems(self) -> AsyncIterator[VerifyProblem]:
        return self._check_records(columns=True, bindings=False)

    def iter_binding_problems(self) -> AsyncIterator[VerifyProblem]:
        return self._check_records(columns=False, bindings=True)

    def iter_all_record_problems(
        self, references: ReferenceSink | None = None
    ) -> AsyncIterator[VerifyProblem]:
        return self._check_records(columns=True, bindings=True, references=references)

    async def iter_blob_references(self) -> AsyncIterator[tuple[str, str, str, int]]:
        for spec in BOUND:
            column = spec.blob_column
            if column is None:
                continue
            after: tuple[Any, ...] | None = None
            while True:

                def page(
                    conn: Connection, spec: Bound = spec, after: tuple[Any, ...] | None = after
                ) -> list[AnyRow]:
                    return self._read_page(conn, spec, after)

                rows = await self._read("iter_blob_references", page)
                if not rows:
                    break
                for row in rows:
                    yield (spec.kind, spec.subject_of(row), *_blob_of(row, column))
                after = tuple(getattr(rows[-1], k) for k in spec.keys)

    # -- indexes beside the records ----------------------------------------------------------

    async def _orphan_tags(self) -> AsyncIterator[VerifyProblem]:
        """Tag rows naming an artifact that does not exist."""
        art, tags = artifacts_table.c, artifact_tags_table.c
        orphans = (
            select(tags.artifact_id)
            .outerjoin(artifacts_table, art.artifact_id == tags.artifact_id)
            .where(art.artifact_id.is_(None))
            .distinct()
            .limit(PAGE_SIZE)
        )
        for orphan in await self._read("iter_record_problems", fetch_all(orphans)):
            yield VerifyProblem(
                kind="artifact",
                code="integrity_error",
                subject=str(orphan.artifact_id),
                message=f"the tag index names artifact {orphan.artifact_id}, which does not "
                "exist (the index was edited)",
            )

    async def _pointer_problems(self) -> AsyncIterator[VerifyProblem]:
        """Each channel pointer row must be exactly what its move set: the definition, the
        channel and the digest (what a promotion's compare-and-set reads)."""
        ptr, mv = channel_pointers_table.c, channel_moves_table.c
        stmt = select(ptr.kind, ptr.definition_id, ptr.channel, ptr.digest, ptr.move_id, mv.body)
        stmt = stmt.outerjoin(channel_moves_table, mv.move_id == ptr.move_id)
        async for row in self._keyset_pages(stmt, [ptr.kind, ptr.definition_id, ptr.channel]):
            subject = f"{row.kind}/{row.definition_id}#{row.channel}"
            try:
                move = (
                    None
                    if row.body is None
                    else parse_body(ChannelMove, row.body, "channel_move", str(row.move_id))
                )
            except IntegrityError:
                continue  # reported with the records
            expected = (
                None
                if move is None
                else (move.kind.value, move.definition_id, move.channel.value, move.to_digest)
            )
            if expected != (row.kind, row.definition_id, row.channel, row.digest):
                yield VerifyProblem(
                    kind="registry",
                    code="integrity_error",
                    subject=subject,
                    message=f"channel pointer {subject} is not what its move {row.move_id} set "
                    "(the pointer was edited)",
                    details={"move_id": row.move_id, "expected": expected, "found": row.digest},
                )


def _writer_problems(conn: Connection) -> list[VerifyProblem]:
    """``approvals.written_by`` is the database's own record of the role that wrote a row
    (migration 0006), not a field of the approval: PostgreSQL fills it in and its trigger
    refuses a change, so it is the server's to guard there. SQLite has no roles and never
    fills it: a value there is a hand edit."""
    if conn.dialect.name != "sqlite":
        return []
    ap = approvals_table.c
    stmt = select(ap.approval_id).where(ap.written_by.is_not(None)).limit(PAGE_SIZE)
    return [
        VerifyProblem(
            kind="approval",
            code="integrity_error",
            subject=str(row.approval_id),
            message=f"approval {row.approval_id} names a database role that wrote it, on "
            "SQLite, which has none (the row was edited)",
            details={"column": "written_by"},
        )
        for row in conn.execute(stmt)
    ]


def _blob_of(row: AnyRow, column: str, data: Any = None) -> tuple[str, int]:
    """The blob digest and size a record holds: from its body (what reads use) when that is a
    JSON object holding both, well formed, else from its columns (a body that does not
    validate is reported by the record checks). ``data``: the body already parsed, if it
    was."""
    if data is None and row.body is not None:
        try:
            data = from_json(row.body)
        except ValueError:
            data = None
    if isinstance(data, dict):
        digest, size = data.get(column), data.get("size_bytes")
        if (
            isinstance(digest, str)
            and _HEX64.fullmatch(digest)
            and isinstance(size, int)
            and not isinstance(size, bool)
        ):
            return digest, size
    return str(getattr(row, column)), int(row.size_bytes)
