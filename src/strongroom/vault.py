"""The `Vault`: one object a program holds to use strongroom, wiring the services over a
metadata store and a blob store chosen by URL.

    async with await Vault.open("./.strongroom") as vault:
        run = await vault.runs.create(project="demo")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from strongroom._audit_worker import CHILD_THRESHOLD, WorkerFailed, walk_in_child
from strongroom._fs import DEFAULT_VAULT_URL
from strongroom.adapters import InlineBlobStore, open_stores, open_witness
from strongroom.errors import IntegrityError, StrongroomError, ValidationError
from strongroom.integrity import SignedTreeHead, SigningKey, load_signing_key, sign_tree_head
from strongroom.models import (
    AuditEntry,
    DefinitionKind,
    MerkleCheckpoint,
    ProjectConfig,
    RetentionPolicy,
    VerifyReport,
)
from strongroom.ports import BlobStore, MetadataStore
from strongroom.ports.inline_blobs import DEFAULT_INLINE_THRESHOLD
from strongroom.secrets import DEFAULT_REDACT_PATTERNS, Redactor, safe_url
from strongroom.services import (
    Anchor,
    ArtifactService,
    AuditService,
    AuditWalk,
    AuditWalker,
    CatalogService,
    LogService,
    ProgressCallback,
    RetentionService,
    RunService,
    SnapshotService,
    TransitionService,
    verify_vault,
    walk_audit,
)
from strongroom.services.identity import IdentityService
from strongroom.services.registry import RegistryService

_log = logging.getLogger("strongroom")


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


__all__ = [
    "ANCHOR_ENV_VAR",
    "DEFAULT_VAULT_URL",
    "IntegrityOptions",
    "Vault",
    "anchor_to",
    "signed_head",
]


@dataclass(frozen=True)
class IntegrityOptions:
    """How a vault proves its own integrity beyond the hash chains (docs/security.md).

    ``checkpoint_seconds``: also take a checkpoint when a write comes this long after the
    last one (None: only every ``checkpoint_interval`` entries). ``signing_key``: signs every
    checkpoint (a key kept outside the vault: `strongroom keys init`). ``anchor``: called with
    every new checkpoint to append its signed head to a witness outside the vault.
    ``log_head_lines`` / ``log_head_seconds``: an open run log's head enters the audit chain
    at every run transition and at least this often between them."""

    checkpoint_seconds: float | None = 300.0
    signing_key: SigningKey | None = None
    anchor: Anchor | None = None
    log_head_lines: int = 100
    log_head_seconds: float = 5.0

    @classmethod
    def from_environment(cls) -> IntegrityOptions:
        """The defaults a vault opens with: the signing key at `default_key_path` (the
        ``STRONGROOM_SIGNING_KEY`` file, else the user's config directory) if there is one,
        and, when ``STRONGROOM_ANCHOR`` names a witness (a file, a directory or an
        ``s3://`` URL), every checkpoint's signed head appended to it (that needs the key)."""
        key = load_signing_key()
        target = os.environ.get(ANCHOR_ENV_VAR, "").strip()
        if not target:
            return cls(signing_key=key)
        if key is None:
            raise ValidationError(
                f"{ANCHOR_ENV_VAR} is set but there is no signing key to sign the anchored "
                "heads: run `strongroom keys init` (or unset it)",
                operation="vault.open",
                reason="anchor_needs_key",
            )
        return cls(signing_key=key, anchor=anchor_to(target, key))


ANCHOR_ENV_VAR = "STRONGROOM_ANCHOR"


def anchor_to(target: str, key: SigningKey) -> Anchor:
    """An `Anchor` that appends each checkpoint's head, signed with ``key``, to the witness
    at ``target``."""
    witness = open_witness(target)

    async def anchor(checkpoint: MerkleCheckpoint) -> None:
        await witness.append(signed_head(checkpoint, key))

    return anchor


def signed_head(checkpoint: MerkleCheckpoint, key: SigningKey) -> SignedTreeHead:
    """The checkpoint's tree head as a witness stores it: the checkpoint's own signature
    when ``key`` made it, else signed now."""
    if (
        checkpoint.signature is not None
        and checkpoint.signed_at is not None
        and checkpoint.public_key == key.public_key_hex
    ):
        return SignedTreeHead(
            tree_size=checkpoint.tree_size,
            root_hash=checkpoint.root_hash,
            timestamp=checkpoint.signed_at,
            key_id=key.key_id,
            public_key=key.public_key_hex,
            signature=checkpoint.signature,
        )
    return sign_tree_head(key, checkpoint.tree_size, checkpoint.root_hash)


class Vault:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        url: str = "memory://",
        redact_patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        checkpoint_interval: int = 1000,
        integrity: IntegrityOptions | None = None,
        bootstrap: bool = True,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
    ) -> None:
        """Wire the services to a store pair (opened by the caller, or by `open`).
        ``bootstrap=False``: never add the default catalog entries (see `open`).

        ``vault.blobs`` keeps blobs of at most ``inline_threshold`` bytes (64 KiB by default;
        0: none) as rows of the records store and the rest in ``blobs``
        (`strongroom.adapters.InlineBlobStore`); given an `InlineBlobStore`, it is used as is."""
        options = integrity if integrity is not None else IntegrityOptions()
        self.url = url
        # The URL as given to `open` (it may hold a password; never shown): what verify's
        # audit worker reopens the store with. None: built from stores, not reopenable.
        self._location: str | None = None
        self.metadata = metadata
        if not isinstance(blobs, InlineBlobStore):
            blobs = InlineBlobStore(metadata, blobs, threshold=inline_threshold)
        self.blobs: InlineBlobStore = blobs
        self.integrity = options
        self.audit = AuditService(
            metadata,
            checkpoint_interval=checkpoint_interval,
            checkpoint_seconds=options.checkpoint_seconds,
            signing_key=options.signing_key,
            anchor=options.anchor,
        )
        self.artifacts = ArtifactService(metadata, blobs)
        #: The vault's one redactor (``redact_patterns``): log lines, `PipelineRun` error
        #: records and the execution lane's tool output all go through it (`strongroom.secrets`).
        self.redactor = Redactor(redact_patterns)
        self.logs = LogService(
            metadata,
            self.artifacts,
            self.redactor,
            head_every_lines=options.log_head_lines,
            head_every_seconds=options.log_head_seconds,
        )
        self.runs = RunService(metadata, self.logs)
        self.snapshots = SnapshotService(metadata, blobs)
        self.transitions = TransitionService(metadata, self.snapshots, self.runs, self.logs)
        self.catalog = CatalogService(metadata, blobs, self.audit, bootstrap=bootstrap)
        self.registry = RegistryService(metadata, blobs, self.audit, self.catalog)
        #: Holds, run deletion and garbage collection (docs/retention.md).
        self.retention = RetentionService(
            metadata, blobs, seal=self.logs.seal, project_policies=self._project_policies
        )

    async def _project_policies(self) -> list[tuple[str, RetentionPolicy]]:
        """Each project config's retention rules: the version its ``production`` channel
        points at, else its newest (the registry's default selector)."""
        found: list[tuple[str, RetentionPolicy]] = []
        for summary in await self.registry.list(DefinitionKind.PROJECT_CONFIG):
            _, defn = await self.registry.get(DefinitionKind.PROJECT_CONFIG, summary.definition_id)
            if isinstance(defn, ProjectConfig) and defn.retention is not None:
                found.append((defn.project_id, defn.retention))
        return found

    @property
    def identity(self) -> IdentityService:
        """The people registered in the vault with their keys (who signs governed acts)."""
        return self.registry.identity

    def local_paths(self) -> list[Path]:
        """The directories on this machine that hold the vault's files (the SQLite database's
        folder, the local blob root): what a sandboxed tool must never be able to reach."""
        found: list[Path] = []
        database = getattr(self.metadata, "path", None)
        if isinstance(database, Path):
            found.append(database.parent)
        root = getattr(self.blobs, "root", None)
        if isinstance(root, Path):
            found.append(root)
        return found

    @classmethod
    async def open(
        cls,
        url: str | Path | None = None,
        *,
        blobs_url: str | Path | None = None,
        redact_patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        checkpoint_interval: int = 1000,
        integrity: IntegrityOptions | None = None,
        create: bool = True,
        bootstrap: bool = True,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
    ) -> Self:
        """Open the vault at ``url``: a directory path for the embedded SQLite + local blobs
        vault, ``postgresql://...`` (with ``blobs_url``), or ``memory://``. ``blobs_url``
        (``s3://bucket/prefix``, a directory, ``memory://``) puts the blobs elsewhere than the
        URL's default (see `strongroom.adapters`). A missing embedded vault is created unless
        ``create=False``, which raises `NotFound` instead. ``vault.url`` never holds a
        password (`safe_url`).

        Opening also creates whichever default catalog entries (the ``default`` provider and
        the standard namespaces) are missing, each one audited; a vault built from two
        stores (``Vault(metadata, blobs)``) gets them before its first catalog use
        (`CatalogService`). ``bootstrap=False`` skips that at open, so opening adds no record
        (a new store still gets its schema): for a vault that is about to receive another
        vault's records verbatim (``strongroom import``), where a catalog and audit chain of
        its own would collide with the copied ones."""
        text = str(url) if url is not None else DEFAULT_VAULT_URL
        metadata, blobs = open_stores(
            text, blobs_url=str(blobs_url) if blobs_url is not None else None, create=create
        )
        # A records store on another machine opens after the blob store answers, so a
        # missing S3 bucket is reported before a table is created in PostgreSQL; an embedded
        # one first, so a directory holding another program's file is refused before a blob
        # folder is made beside it.
        remote = metadata.backend not in ("sqlite", "memory")
        first, second = (blobs, metadata) if remote else (metadata, blobs)
        await first.open()
        try:
            await second.open()
            if integrity is None:
                integrity = IntegrityOptions.from_environment()
            vault = cls(
                metadata,
                blobs,
                url=safe_url(text),
                redact_patterns=redact_patterns,
                checkpoint_interval=checkpoint_interval,
                integrity=integrity,
                bootstrap=bootstrap,
                inline_threshold=inline_threshold,
            )
            vault._location = text
            if bootstrap:
                await vault.catalog.ensure_defaults()
        except BaseException:
            await blobs.close()
            await metadata.close()
            raise
        return vault

    async def close(self) -> None:
        try:
            await self.blobs.close()
        finally:
            await self.metadata.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def verify(
        self,
        *,
        on_progress: ProgressCallback | None = None,
        anchors: Sequence[SignedTreeHead] = (),
        trusted_keys: Collection[str] | None = None,
        parallel: bool | None = None,
        record: bool = False,
    ) -> VerifyReport:
        """Check everything (see `strongroom.services.verify_vault`). ``anchors``: signed
        heads read from a witness outside the vault; ``trusted_keys``: the public keys whose
        signatures count (default: the configured signing key's, if any).

        ``record``: then append the outcome to the audit chain (`AuditService.record_verify`,
        a ``vault.verified`` entry by this process's principal, ``os:USER`` or ``pg:ROLE``;
        `AuditService.last_verify` reads the newest). Checking itself never writes. A record
        that cannot be written (a read-only connection or role, a vault that went away) does
        not hide the report: the error is logged, kept in ``vault.audit.errors`` and the
        report returned as it is.

        ``parallel``: walk the audit chain in a second process beside the other stages (see
        `strongroom._audit_worker`); None (the default) does so for a vault opened by URL whose
        records store can be reopened from it (`StoreCapabilities.reopen_by_url`: SQL) and
        whose chain holds at least `CHILD_THRESHOLD` entries, on a machine with more than one
        CPU. The report is the same either way."""
        if trusted_keys is None and self.integrity.signing_key is not None:
            trusted_keys = {self.integrity.signing_key.public_key_hex}
        walker = await self._audit_walker(anchors, trusted_keys, parallel)
        report = await verify_vault(
            self.metadata,
            self.blobs,
            self.logs,
            self.audit,
            on_progress=on_progress,
            anchors=anchors,
            trusted_keys=trusted_keys,
            audit_walker=walker,
        )
        if record:
            await self.record_verify(report)
        return report

    async def record_verify(self, report: VerifyReport) -> AuditEntry | None:
        """Append ``report``'s outcome as this process's principal (what ``verify(record=
        True)`` does) and return its entry; None when it could not be written (the error is
        logged and appended to ``vault.audit.errors``)."""
        try:
            return await self.audit.record_verify(report, actor=await self.identity.principal())
        except StrongroomError as exc:
            _log.warning("verify: its outcome could not be recorded in the audit chain (%s)", exc)
            self.audit.errors.append(exc)
            return None

    async def _audit_walker(
        self,
        anchors: Sequence[SignedTreeHead],
        trusted_keys: Collection[str] | None,
        parallel: bool | None,
    ) -> AuditWalker | None:
        location = self._location
        if parallel is False or location is None or not self.metadata.capabilities.reopen_by_url:
            return None
        if parallel is None and _usable_cpus() < 2:
            return None
        try:
            head = await self.audit.head()
        except IntegrityError:
            head = None  # the walk reports it; a damaged head is no reason for a child
        if parallel is None and (head is None or head.seq < CHILD_THRESHOLD):
            return None
        least = head.seq if head is not None else 0

        async def walker(progress: ProgressCallback) -> AuditWalk:
            try:
                walk = await walk_in_child(location, anchors, trusted_keys, progress)
                if walk.checked.get("audit_entries", 0) < least:
                    # The chain only grows: a walk that saw fewer entries than this process
                    # saw before it started did not walk this vault's chain.
                    raise WorkerFailed(
                        f"it replayed {walk.checked.get('audit_entries', 0)} audit entries, "
                        f"fewer than the {least} the chain held when it started"
                    )
                return walk
            except WorkerFailed as exc:
                _log.warning("verify: the audit worker failed (%s); walking here instead", exc)
                return await walk_audit(
                    self.audit, anchors=anchors, trusted_keys=trusted_keys, progress=progress
                )

        return walker
