"""A populated vault to tamper with, on SQLite or PostgreSQL (blobs in a local directory), and
the raw access an intruder would use: SQL straight into the records database (append-only
guards dropped first, as someone who owns the database would) and the blob files on disk.

Used by tests/test_tamper_matrix.py (one kind of tamper per test, each on a fresh vault) and
tests/test_tamper_property.py (random single-row edits)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from _sql_tamper import drop_append_only_guards
from strongroom.adapters import open_witness
from strongroom.integrity import SignedTreeHead, SigningKey
from strongroom.models import VerifyReport
from strongroom.testing.keys import approver
from strongroom.vault import IntegrityOptions, Vault, anchor_to

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT_INTERVAL = 10


@dataclass
class Populated:
    """What `populate` wrote, by name, for the tampers to aim at."""

    url: str
    blobs_dir: Path
    key: SigningKey
    anchors: Path
    completed_run: str = ""
    failed_run: str = ""
    open_run: str = ""
    artifacts: list[str] = field(default_factory=list)  # completed run's, oldest first
    artifact_blobs: list[str] = field(default_factory=list)
    snapshot_blobs: list[str] = field(default_factory=list)
    sealed_log_artifact: str = ""
    object_id: str = ""
    deleted_object_id: str = ""
    definition: str = ""  # kind/id@version
    approval_id: str = ""
    open_log_carried: int = 0  # the open run's newest log head in the audit chain
    audit_head: int = 0
    deleted_run: str = ""  # deleted under its tombstone
    deleted_run_row: dict[str, Any] = field(default_factory=dict)  # its runs row, as it was
    hold_id: str = ""  # an active hold on the failed run

    @property
    def sqlite_path(self) -> Path | None:
        if self.url.startswith("postgresql"):
            return None
        return Path(self.url) / "vault.db"

    def options(self, *, anchor: bool = True) -> IntegrityOptions:
        return IntegrityOptions(
            checkpoint_seconds=None,
            signing_key=self.key,
            anchor=anchor_to(str(self.anchors), self.key) if anchor else None,
            log_head_lines=100,
            log_head_seconds=3600.0,
        )

    async def open(self, *, anchor: bool = True, bootstrap: bool = True) -> Vault:
        return await Vault.open(
            self.url,
            blobs_url=self.blobs_dir,
            checkpoint_interval=CHECKPOINT_INTERVAL,
            integrity=self.options(anchor=anchor),
            bootstrap=bootstrap,
        )

    async def heads(self) -> list[SignedTreeHead]:
        return await open_witness(str(self.anchors)).read()

    async def verify(self, *, with_anchor: bool = True) -> VerifyReport:
        heads = await self.heads() if with_anchor else []
        vault = await self.open(anchor=False, bootstrap=False)  # verify changes nothing
        async with vault:
            return await vault.verify(anchors=heads)

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / "sha256" / digest[:2] / digest[2:4] / digest

    def inline(self, digest: str) -> bool:
        """Whether the blob is a row of the records store (small blobs) rather than a file."""
        engine = self._engine()
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    sa.text("SELECT 1 FROM inline_blobs WHERE sha256 = :h"), {"h": digest}
                )
                return found.first() is not None
        finally:
            engine.dispose()

    def blob_bytes(self, digest: str) -> bytes:
        """The stored bytes of a blob, wherever it is kept."""
        if self.inline(digest):
            return bytes(self.row("inline_blobs", f"sha256 = '{digest}'")["data"])
        return self.blob_path(digest).read_bytes()

    def write_blob(self, digest: str, data: bytes) -> None:
        """Replace a blob's stored bytes behind the vault's back, wherever it is kept."""
        if self.inline(digest):
            with self.sql() as conn:
                conn.execute(
                    sa.text("UPDATE inline_blobs SET data = :d WHERE sha256 = :h"),
                    {"d": data, "h": digest},
                )
            return
        writable(self.blob_path(digest)).write_bytes(data)

    def delete_blob(self, digest: str) -> None:
        """Remove a blob behind the vault's back, wherever it is kept."""
        if self.inline(digest):
            with self.sql() as conn:
                conn.execute(sa.text("DELETE FROM inline_blobs WHERE sha256 = :h"), {"h": digest})
            return
        self.blob_path(digest).unlink()

    def row(self, table: str, where: str) -> dict[str, Any]:
        """One row as it is stored (read only: the guards stay)."""
        engine = self._engine()
        try:
            with engine.connect() as conn:
                found = conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"))
                return dict(found.mappings().one())
        finally:
            engine.dispose()

    def _engine(self) -> sa.Engine:
        if self.url.startswith("postgresql"):
            return sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1))
        return sa.create_engine(f"sqlite:///{self.sqlite_path}")

    @contextmanager
    def sql(self) -> Iterator[sa.Connection]:
        """A raw connection to the records database, guards dropped, committed on exit."""
        url = self.url
        if url.startswith("postgresql"):
            engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        else:
            engine = sa.create_engine(f"sqlite:///{self.sqlite_path}")
        try:
            with engine.begin() as conn:
                drop_append_only_guards(conn)
                yield conn
        finally:
            engine.dispose()


async def populate(url: str, blobs_dir: Path, key: SigningKey, anchors: Path) -> Populated:
    """Runs in every state (completed with snapshots, artifacts and a sealed log; failed;
    running with an open log), catalog objects (one deleted), a published and promoted
    registry definition, an approval; checkpoints every 10 entries, signed, each anchored."""
    p = Populated(url=url, blobs_dir=blobs_dir, key=key, anchors=anchors)
    async with await p.open() as vault:
        done = await vault.runs.create(project="matrix", actor="alice", purpose="completed")
        p.completed_run = done.run_id
        await vault.runs.start(done.run_id)
        for revision in range(3):
            t = await vault.transitions.record(
                done.run_id,
                state={"data": {"step": revision}},
                expected_revision=revision,
                run_changes={"current_step": f"s{revision}"},
                log_lines=[{"event": "step", "message": f"step {revision}"}],
            )
            assert t.snapshot is not None
            p.snapshot_blobs.append(t.snapshot.sha256)
        # The first is larger than the inline threshold (a file of the blob directory), the
        # second a row of the records store: the blob tampers hit both places.
        for name, times in (("first.txt", 8000), ("second.txt", 1)):
            data = f"{name} bytes".encode() * times
            art = await vault.artifacts.put_bytes(done.run_id, data, name=name)
            p.artifacts.append(art.artifact_id)
            p.artifact_blobs.append(art.sha256)
        await vault.logs.append_many(
            done.run_id, [{"event": "work", "message": f"line {n}"} for n in range(5)]
        )
        await vault.runs.complete(done.run_id)
        ref = await vault.logs.reference(done.run_id)
        assert ref.sealed_artifact_id is not None
        p.sealed_log_artifact = ref.sealed_artifact_id

        failed = await vault.runs.create(project="matrix", actor="bob", purpose="failed")
        p.failed_run = failed.run_id
        await vault.runs.start(failed.run_id)
        await vault.runs.fail(failed.run_id, {"code": "tool_failed", "message": "boom"})

        running = await vault.runs.create(project="matrix", actor="carol", purpose="open")
        p.open_run = running.run_id
        await vault.runs.start(running.run_id)
        for batch in range(5):
            await vault.logs.append_many(
                running.run_id,
                [{"event": "tick", "message": f"tick {batch}.{n}"} for n in range(50)],
            )

        obj = await vault.catalog.put_object("projects", "projects/matrix/1.json", b'{"v": 1}')
        p.object_id = obj.object_id
        gone = await vault.catalog.put_object("projects", "projects/matrix/2.json", b'{"v": 2}')
        p.deleted_object_id = gone.object_id
        await vault.catalog.delete_object(gone.object_id)

        policy = REPO / "examples" / "registry" / "sandbox-readonly.yaml"
        alice = await approver(vault, "alice")  # a sandbox policy is published signed
        published = await vault.registry.publish(
            policy.read_bytes(), file_name=policy.name, signer=alice
        )
        version = published.version
        p.definition = f"{version.kind.value}/{version.definition_id}@{version.version}"
        await vault.registry.promote(
            version.kind,
            version.definition_id,
            version.version,
            to="staging",
            reason="matrix",
        )
        approval = await vault.registry.approve(
            {"scope": "run", "run_id": running.run_id}, reason="matrix", signer=alice
        )
        p.approval_id = approval.approval_id

        # Retention: a run deleted under its tombstone (its row kept here to put back), and a
        # hold on the failed run.
        gone_run = await vault.runs.create(project="matrix", actor="dave", purpose="deleted")
        await vault.runs.start(gone_run.run_id)
        await vault.artifacts.put_bytes(gone_run.run_id, b"soon gone", name="gone.txt")
        await vault.runs.complete(gone_run.run_id)
        p.deleted_run = gone_run.run_id
        p.deleted_run_row = p.row("runs", f"run_id = '{gone_run.run_id}'")
        await vault.retention.delete_run(gone_run.run_id, reason="matrix", actor="dpo")
        hold = await vault.retention.add_hold(run_id=failed.run_id, reason="matrix")
        p.hold_id = hold.hold_id

        carried = await vault.metadata.latest_binding("log", running.run_id)
        assert carried is not None
        assert carried[1].seq is not None
        p.open_log_carried = carried[1].seq
        checkpoint = await vault.audit.checkpoint()  # anchored: the whole chain is witnessed
        assert checkpoint is not None
        p.audit_head = checkpoint.tree_size
        report = await vault.verify(anchors=await p.heads())
        assert report.ok, report.problems
    return p


def edit_body(conn: sa.Connection, table: str, where: str, **changes: Any) -> None:
    """Change fields of one row's body (and nothing else), as an intruder editing JSON."""
    rows = conn.execute(sa.text(f"SELECT body FROM {table} WHERE {where}")).all()
    assert len(rows) == 1, (table, where, len(rows))
    body = json.loads(rows[0][0])
    body.update(changes)
    conn.execute(
        sa.text(f"UPDATE {table} SET body = :body WHERE {where}"), {"body": json.dumps(body)}
    )


def body_of(conn: sa.Connection, table: str, where: str) -> dict[str, Any]:
    (body,) = conn.execute(sa.text(f"SELECT body FROM {table} WHERE {where}")).one()
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path
