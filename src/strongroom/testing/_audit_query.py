"""Conformance: reading the audit chain by event, actor and run (`AuditQuery`), newest first
and oldest first, paged by seq; and `verify` recording its outcome (``vault.verified``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from strongroom.errors import StrongroomError, ValidationError
from strongroom.models import (
    VERIFIED_EVENT,
    AuditEntry,
    AuditQuery,
    RunTarget,
    VerifyProblem,
    VerifyReport,
    audit_run_id,
)
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault


async def _all_entries(vault: Vault) -> list[AuditEntry]:
    found: list[AuditEntry] = []
    while page := await vault.audit.entries(after_seq=len(found), limit=1000):
        found += page
    return found


async def _walk(vault: Vault, query: dict[str, Any], limit: int) -> list[int]:
    """Every seq the query pages through, ``limit`` at a time, following the cursor."""
    seqs: list[int] = []
    newest = "after_seq" not in query
    cursor: int | None = None
    while True:
        paging = {} if cursor is None else {"before_seq" if newest else "after_seq": cursor}
        page = await vault.audit.query({**query, **paging, "limit": limit})
        assert len(page.entries) <= limit
        seqs += [e.seq for e in page.entries]
        if page.next_cursor is None:
            return seqs
        assert page.next_cursor == page.entries[-1].seq
        cursor = page.next_cursor


class AuditQueryTests(VaultFixtureContract):
    async def _history(self, vault: Vault) -> tuple[str, str]:
        """Two runs by different actors with a history each, and events about a run whose
        subject is something else (a tool execution, an approval of the run)."""
        first = await vault.runs.create(project="q", actor="ada")
        second = await vault.runs.create(project="q", actor="bob")
        await vault.runs.start(first.run_id)
        await vault.snapshots.save(first.run_id, {"data": {"a": 1}}, expected_revision=0)
        await vault.artifacts.put_bytes(first.run_id, b"payload", name="p.bin")
        await vault.logs.append_many(first.run_id, [{"event": "e"}] * 3)
        await vault.audit.record(
            {
                "event": "execution.start",
                "actor": "bob",
                "subject_type": "tool_invocation",
                "subject_id": "request-1",
                "details": {"run_id": first.run_id, "tool_id": "t"},
            }
        )
        await vault.audit.record(
            {
                "event": "registry.approved",
                "actor": "carol",
                "subject_type": "approval",
                "subject_id": "approval-1",
                "details": {"target": {"scope": "run", "run_id": first.run_id}},
            }
        )
        # Names next to the "run." prefix that it must not take in.
        await vault.audit.record(
            {"event": "run_extra.noted", "subject_type": "run", "subject_id": second.run_id}
        )
        await vault.audit.record({"event": "runs", "subject_type": "vault", "subject_id": "x"})
        await vault.runs.start(second.run_id, actor="bob")
        await vault.runs.complete(first.run_id)
        await vault.runs.cancel(second.run_id, actor="bob")
        return first.run_id, second.run_id

    async def test_a_run_has_every_entry_about_it_newest_first(self, vault: Vault) -> None:
        first, second = await self._history(vault)
        entries = await _all_entries(vault)
        page = await vault.audit.query(run_id=first, limit=1000)
        assert page.next_cursor is None
        expected = [e for e in reversed(entries) if audit_run_id(e) == first]
        assert [e.seq for e in page.entries] == [e.seq for e in expected]
        assert page.entries == expected
        events = {e.event for e in page.entries}
        assert {
            "run.created",
            "run.status",
            "run.ended",
            "snapshot.saved",
            "artifact.stored",
            "log.sealed",
            "execution.start",
            "registry.approved",
        } <= events
        assert all(audit_run_id(e) != second for e in page.entries)
        # Oldest first: the run's history in order.
        forward = await vault.audit.query(run_id=first, after_seq=0, limit=1000)
        assert [e.seq for e in forward.entries] == [e.seq for e in reversed(expected)]
        assert forward.entries[0].event == "run.created"

    @pytest.mark.parametrize(
        "filters",
        [
            {},
            {"event": "run.status"},
            {"event": "run."},
            {"event": "log."},
            {"actor": "bob"},
            {"actor": "bob", "event": "run."},
            {"actor": "bob", "event": "run.status"},
            {"run_id": "FIRST", "event": "log."},
            {"run_id": "SECOND", "actor": "bob"},
            {"run_id": "FIRST", "actor": "nobody"},
            {"event": "no.such."},
        ],
    )
    async def test_filters_page_through_exactly_the_matching_entries(
        self, vault: Vault, filters: dict[str, Any]
    ) -> None:
        first, second = await self._history(vault)
        resolved = {
            k: {"FIRST": first, "SECOND": second}.get(v, v) if k == "run_id" else v
            for k, v in filters.items()
        }
        query = AuditQuery.model_validate(resolved)
        entries = await _all_entries(vault)
        matching = [e.seq for e in entries if query.matches(e)]
        assert await _walk(vault, resolved, 2) == list(reversed(matching))
        assert await _walk(vault, {**resolved, "after_seq": 0}, 3) == matching
        if matching:  # a cursor in the middle
            middle = matching[len(matching) // 2]
            page = await vault.audit.query({**resolved, "before_seq": middle, "limit": 1000})
            assert [e.seq for e in page.entries] == [s for s in reversed(matching) if s < middle]
            page = await vault.audit.query({**resolved, "after_seq": middle, "limit": 1000})
            assert [e.seq for e in page.entries] == [s for s in matching if s > middle]

    async def test_an_event_prefix_takes_only_names_under_it(self, vault: Vault) -> None:
        await self._history(vault)
        page = await vault.audit.query(event="run.", limit=1000)
        assert page.entries
        assert all(e.event.startswith("run.") for e in page.entries)
        exact = await vault.audit.query(event="runs", limit=1000)
        assert [e.event for e in exact.entries] == ["runs"]
        assert (await vault.audit.query(event="run", limit=1000)).entries == []

    async def test_details_given_as_objects_are_indexed_as_stored(self, vault: Vault) -> None:
        """A run named by a UUID object or a target model in an event's details is indexed
        as the stored JSON says (what verify recomputes from), not missed."""
        run = await self.new_run(vault)
        as_uuid = await vault.audit.record(
            {
                "event": "execution.end",
                "subject_type": "tool_invocation",
                "subject_id": "r2",
                "details": {"run_id": uuid.UUID(run.run_id)},
            }
        )
        as_model = await vault.audit.record(
            {
                "event": "registry.approved",
                "subject_type": "approval",
                "subject_id": "a2",
                "details": {"target": RunTarget(scope="run", run_id=run.run_id)},
            }
        )
        page = await vault.audit.query(run_id=run.run_id, event="execution.end")
        assert [e.seq for e in page.entries] == [as_uuid.seq]
        page = await vault.audit.query(run_id=run.run_id, event="registry.")
        assert [e.seq for e in page.entries] == [as_model.seq]
        report = await vault.verify()
        assert report.ok, report.problems

    async def test_the_default_page_is_the_newest_fifty(self, vault: Vault) -> None:
        for _ in range(60):
            await vault.runs.create(project="many", actor="ada")
        entries = await _all_entries(vault)
        page = await vault.audit.query()
        assert len(entries) > 50
        assert [e.seq for e in page.entries] == [e.seq for e in reversed(entries)][:50]
        assert page.next_cursor == page.entries[-1].seq

    @pytest.mark.parametrize(
        "bad",
        [
            {"limit": 0},
            {"limit": 1001},
            {"before_seq": 0},
            {"after_seq": -1},
            {"before_seq": 5, "after_seq": 1},
            {"run_id": "not-a-run"},
            {"event": "Run.created"},
            {"event": "."},
            {"event": "x" * 129},
            {"actor": "../etc"},
            {"unknown": 1},
        ],
    )
    async def test_bad_queries_are_validation_errors(
        self, vault: Vault, bad: dict[str, Any]
    ) -> None:
        with pytest.raises(ValidationError):
            await vault.audit.query(bad)
        with pytest.raises(ValidationError):
            await vault.audit.query(**bad)

    # -- verify records its outcome -----------------------------------------------------------

    async def test_verify_records_its_outcome_when_asked(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        assert await vault.audit.last_verify() is None
        head = await vault.audit.head()
        plain = await vault.verify()
        assert plain.ok, plain.problems
        assert await vault.audit.head() == head  # verify alone writes nothing
        assert await vault.audit.last_verify() is None

        report = await vault.verify(record=True)
        assert report.ok, report.problems
        last = await vault.audit.last_verify()
        assert last is not None
        assert last.actor == await vault.identity.principal()
        assert last.outcome.ok is True
        assert last.outcome.problem_count == 0
        assert last.outcome.checked == report.checked
        assert last.outcome.started_at == report.started_at
        (entry,) = (await vault.audit.query(event=VERIFIED_EVENT)).entries
        assert entry.seq == last.seq
        assert (entry.subject_type, entry.subject_id) == ("vault", "verify")
        assert entry.records == []

        # The record keeps the vault consistent: the next verify is clean and counts it.
        again = await vault.verify(record=True)
        assert again.ok, again.problems
        assert again.checked["audit_entries"] >= last.seq
        newer = await vault.audit.last_verify()
        assert newer is not None
        assert newer.seq > last.seq
        assert [e.seq for e in (await vault.audit.query(event="vault.")).entries] == [
            newer.seq,
            last.seq,
        ]

    async def test_a_verify_that_finds_problems_records_them_bounded(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        art = await vault.artifacts.put_bytes(run.run_id, b"payload", name="p.bin")
        await self.corrupt_blob(vault, art.sha256)
        report = await vault.verify(record=True)
        assert not report.ok
        last = await vault.audit.last_verify()
        assert last is not None
        assert last.outcome.ok is False
        assert last.outcome.problem_count == len(report.problems)
        assert last.outcome.problem_kinds.get("blob") == 1
        assert [p.subject for p in last.outcome.problems] == [
            p.subject for p in report.problems[:10]
        ]

        many = VerifyReport(
            problems=[
                VerifyProblem(
                    kind="audit_chain",
                    code="integrity_error",
                    subject="audit#" + "9" * 5000,
                    message="m" * 10_000,
                    details={"reason": "r" * 500},
                )
            ]
            * 300
        )
        entry = await vault.audit.record_verify(many, actor="auditor")
        assert len(entry.model_dump_json()) < 8000
        last = await vault.audit.last_verify()
        assert last is not None
        assert (last.seq, last.actor) == (entry.seq, "auditor")
        assert last.outcome.problem_count == 300
        assert last.outcome.problem_kinds == {"audit_chain": 300}
        assert len(last.outcome.problems) == 10
        assert all(len(p.subject) <= 200 for p in last.outcome.problems)
        assert "message" not in entry.details["problems"][0]

    async def test_a_record_that_cannot_be_written_does_not_hide_the_report(
        self, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await self.new_run(vault)

        async def refused(report: VerifyReport, *, actor: str = "system") -> AuditEntry:
            raise StrongroomError("read-only", operation="audit.record")

        monkeypatch.setattr(vault.audit, "record_verify", refused)
        before = len(vault.audit.errors)
        report = await vault.verify(record=True)
        assert report.ok, report.problems
        assert [e.message for e in vault.audit.errors[before:]] == ["read-only"]
        assert await vault.audit.last_verify() is None
