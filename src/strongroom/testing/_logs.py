"""Conformance: chained run logs, redaction, sealing, the audit chain and the catalog."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from datetime import UTC, datetime

import pytest

from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.models import GENESIS_HASH, LogEntry, LogQuery, entry_hash
from strongroom.services import merkle_root
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault


class LogTests(VaultFixtureContract):
    async def test_appended_lines_form_a_hash_chain(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.logs.append(run.run_id, {"event": "run.start", "message": "hello"})
        await vault.logs.append_many(
            run.run_id,
            [{"event": "step", "level": "debug", "data": {"i": i}} for i in range(10)],
        )
        entries = await vault.logs.read(run.run_id)
        assert [e.seq for e in entries] == list(range(1, 12))
        assert entries[0].prev_hash == GENESIS_HASH
        for prev, entry in itertools.pairwise(entries):
            assert entry.prev_hash == prev.hash
        assert all(entry_hash(e) == e.hash for e in entries)
        assert all(e.run_id == run.run_id for e in entries)

    async def test_secrets_are_redacted_before_storage(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.logs.append(
            run.run_id,
            {
                "event": "connect",
                "message": "using password=hunter2 and key AKIAABCDEFGHIJKLMNOP",
                "data": {"url": "postgresql://bob:s3cr3t@db/x", "nested": ["token: abc123"]},
            },
        )
        (entry,) = await vault.logs.read(run.run_id)
        text = entry.model_dump_json()
        for secret in ("hunter2", "AKIAABCDEFGHIJKLMNOP", "s3cr3t", "abc123"):
            assert secret not in text
        assert "[REDACTED]" in entry.message

    async def test_a_run_error_is_redacted_like_a_log_line(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        await vault.runs.fail(
            run.run_id,
            {
                "code": "connect_failed",
                "message": "using password=hunter2 and key AKIAABCDEFGHIJKLMNOP",
                "details": {"url": "postgresql://bob:s3cr3t@db/x"},
            },
        )
        stored = await vault.runs.get(run.run_id)
        assert stored.last_error is not None
        text = stored.last_error.model_dump_json()
        for secret in ("hunter2", "AKIAABCDEFGHIJKLMNOP", "s3cr3t"):
            assert secret not in text
        assert "[REDACTED]" in stored.last_error.message
        assert stored.last_error.code == "connect_failed"
        # The other path that stores an error (an update, as the orchestrator's transitions
        # write it) redacts too.
        other = await self.new_run(vault)
        await vault.runs.update(
            other.run_id, last_error={"code": "x", "message": "password=hunter2", "details": {}}
        )
        updated = await vault.runs.get(other.run_id)
        assert updated.last_error is not None
        assert "hunter2" not in updated.last_error.model_dump_json()

    async def test_filters_and_tail(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        lines = [
            {"event": "a", "level": "debug", "phase": "ingest"},
            {"event": "b", "level": "info", "phase": "ingest"},
            {"event": "b", "level": "error", "phase": "qa"},
            {"event": "c", "level": "warning", "phase": "qa"},
        ]
        await vault.logs.append_many(run.run_id, lines)
        warn = await vault.logs.read(run.run_id, LogQuery(min_level="warning"))
        assert [e.event for e in warn] == ["b", "c"]
        assert len(await vault.logs.read(run.run_id, LogQuery(event="b"))) == 2
        assert len(await vault.logs.read(run.run_id, LogQuery(phase="qa"))) == 2
        assert [e.seq for e in await vault.logs.tail(run.run_id, 2)] == [3, 4]

    async def test_reference_counts_real_entries(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        assert (await vault.logs.reference(run.run_id)).entry_count == 0
        await vault.logs.append_many(run.run_id, [{"event": "x"}] * 7)
        ref = await vault.logs.reference(run.run_id)
        assert ref.entry_count == 7
        assert ref.format == "jsonl"
        assert not ref.sealed

    async def test_ending_a_run_seals_its_log_into_an_artifact(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        await vault.logs.append_many(
            run.run_id, [{"event": "work", "data": {"i": i}} for i in range(5)]
        )
        await vault.runs.complete(run.run_id)
        ref = await vault.logs.reference(run.run_id)
        assert ref.sealed
        assert ref.sealed_artifact_id is not None
        assert ref.entry_count == 5
        sealed = [e async for e in vault.artifacts.iter_models(ref.sealed_artifact_id, LogEntry)]
        assert sealed == await vault.logs.read(run.run_id)
        with pytest.raises(Conflict):
            await vault.logs.append(run.run_id, {"event": "late"})
        events = [e.event for e in await vault.audit.entries()]
        assert events.count("log.sealed") == 1
        assert "run.ended" in events

    async def test_bad_lines_and_unknown_runs(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        with pytest.raises(ValidationError):
            await vault.logs.append(run.run_id, {"event": "x", "level": "loud"})
        with pytest.raises(ValidationError):
            await vault.logs.append(run.run_id, {"event": "x", "surprise": 1})
        with pytest.raises(ValidationError):
            await vault.logs.append_many(run.run_id, [{"event": "ok"}, {"event": ""}])
        assert (await vault.logs.reference(run.run_id)).entry_count == 0
        with pytest.raises(NotFound):
            await vault.logs.append(str(uuid.uuid4()), {"event": "x"})

    async def test_a_seal_racing_appends_keeps_every_accepted_line(self, vault: Vault) -> None:
        """Appends and a seal at once: every line is either in the sealed chain (and
        counted) or was refused with `conflict`; no line lands after the seal."""
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        await vault.logs.append(run.run_id, {"event": "first"})
        accepted: list[int] = []
        refused = 0

        async def writer(i: int) -> None:
            nonlocal refused
            for j in range(5):
                try:
                    entry = await vault.logs.append(run.run_id, {"event": f"w{i}.{j}"})
                except Conflict:
                    refused += 1
                else:
                    accepted.append(entry.seq)
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(i) for i in range(4)), vault.logs.seal(run.run_id))
        ref = await vault.logs.reference(run.run_id)
        stored = await vault.logs.read(run.run_id, LogQuery(limit=1000))
        assert ref.sealed
        assert ref.entry_count == len(stored) == 1 + len(accepted)
        assert ref.sealed_artifact_id is not None
        sealed = [e async for e in vault.artifacts.iter_models(ref.sealed_artifact_id, LogEntry)]
        assert sealed == stored
        assert len(accepted) + refused == 20
        problems = [p for p in (await vault.verify()).problems if p.kind == "log_chain"]
        assert problems == []

    async def test_a_log_reference_put_if_absent_never_unseals(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.logs.append(run.run_id, {"event": "one"})
        closed = await vault.metadata.close_log(run.run_id, datetime.now(UTC))
        assert closed.sealed
        assert closed.entry_count == 1
        unsealed = closed.model_copy(update={"sealed": False})
        await vault.metadata.put_log_reference(unsealed, if_absent=True)
        assert (await vault.metadata.get_log_reference(run.run_id)) == closed
        assert await vault.metadata.close_log(run.run_id, datetime.now(UTC)) == closed
        head = await vault.metadata.log_head(run.run_id)
        assert head is not None
        late = head.model_copy(update={"seq": 2, "prev_hash": head.hash})
        with pytest.raises(Conflict) as caught:
            await vault.metadata.append_log_entries([late])
        assert caught.value.details["reason"] == "sealed"
        await vault.logs.seal(run.run_id)  # completes the closed log: artifact attached
        ref = await vault.logs.reference(run.run_id)
        assert ref.sealed_artifact_id is not None
        assert ref.entry_count == 1

    async def test_a_finished_run_with_an_empty_log_accepts_no_lines(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.cancel(run.run_id)
        ref = await vault.logs.reference(run.run_id)
        assert ref.sealed
        assert ref.entry_count == 0
        with pytest.raises(Conflict):
            await vault.logs.append(run.run_id, {"event": "late"})


class AuditTests(VaultFixtureContract):
    async def test_governance_events_are_chained(self, vault: Vault) -> None:
        run = await self.new_run(vault)
        await vault.runs.start(run.run_id)
        await vault.runs.cancel(run.run_id)
        entries = await vault.audit.entries()
        events = [(e.event, e.subject_id) for e in entries if e.subject_type == "run"]
        assert events == [
            ("run.created", run.run_id),
            ("run.status", run.run_id),
            ("run.ended", run.run_id),
            ("log.closed", run.run_id),
            ("artifact.stored", run.run_id),
            ("log.sealed", run.run_id),
        ]
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        report = await vault.verify()
        assert report.checked["audit_entries"] == len(entries)
        assert report.problems == []

    async def test_checkpoints_are_rfc6962_roots(self, vault: Vault) -> None:
        for _ in range(10):
            await self.new_run(vault)
        entries = await vault.audit.entries(limit=10000)
        checkpoints = await vault.audit.checkpoints()
        interval = vault.audit.checkpoint_interval
        assert [c.tree_size for c in checkpoints] == list(
            range(interval, len(entries) + 1, interval)
        )
        for cp in checkpoints:
            leaves = [bytes.fromhex(e.hash) for e in entries[: cp.tree_size]]
            assert cp.root_hash == merkle_root(leaves)

    def test_merkle_root_matches_rfc6962_reference_vectors(self) -> None:
        # Test vectors of the Certificate Transparency reference implementation.
        leaves = [
            bytes.fromhex(h)
            for h in [
                "",
                "00",
                "10",
                "2021",
                "3031",
                "40414243",
                "5051525354555657",
                "606162636465666768696a6b6c6d6e6f",
            ]
        ]
        assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
        assert merkle_root(leaves[:1]) == (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        )
        assert merkle_root(leaves) == (
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        )


class CatalogTests(VaultFixtureContract):
    async def test_defaults_exist(self, vault: Vault) -> None:
        providers = await vault.catalog.providers()
        assert [p.provider_id for p in providers] == ["default"]
        ids = {n.namespace_id for n in await vault.catalog.namespaces()}
        assert {"runs", "artifacts", "logs", "playbooks", "projects", "tools"} <= ids

    async def test_namespace_with_retention_and_objects(self, vault: Vault) -> None:
        ns = await vault.catalog.put_namespace(
            {
                "namespace_id": "scratch",
                "provider_id": "default",
                "name": "Scratch",
                "default_prefix": "scratch/",
                "retention_days": 7,
            }
        )
        assert (await vault.catalog.namespace("scratch")) == ns
        obj = await vault.catalog.put_object(
            "scratch", "runs/r1/run.json", b'{"a":1}', content_type="application/json"
        )
        assert await vault.catalog.read_object(obj.object_id) == b'{"a":1}'
        with pytest.raises(Conflict):
            await vault.catalog.put_object("scratch", "runs/r1/run.json", b"other")
        await vault.catalog.delete_object(obj.object_id)
        with pytest.raises(NotFound):
            await vault.catalog.get_object(obj.object_id)
        events = [e.event for e in await vault.audit.entries(limit=10000)]
        assert "catalog.object.deleted" in events
        assert "catalog.namespace.put" in events

    async def test_bad_catalog_input(self, vault: Vault) -> None:
        with pytest.raises(NotFound):
            await vault.catalog.put_namespace(
                {"namespace_id": "n", "provider_id": "ghost", "name": "n", "default_prefix": "n/"}
            )
        with pytest.raises(ValidationError):
            await vault.catalog.put_namespace(
                {
                    "namespace_id": "n",
                    "provider_id": "default",
                    "name": "n",
                    "default_prefix": "n/",
                    "retention_days": 0,
                }
            )
        with pytest.raises(ValidationError):
            await vault.catalog.put_object("artifacts", "../../etc/passwd", b"x")
        with pytest.raises(NotFound):
            await vault.catalog.put_object("ghost", "a.json", b"x")
