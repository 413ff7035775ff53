"""Services over the two ports: runs, snapshots, transitions, artifacts, logs, audit, catalog,
verify; and two helpers layers above use: `parse` (input into a model, or `ValidationError`
naming every bad field) and `verify_chain` (replaying a hash chain)."""

from strongroom.secrets import DEFAULT_REDACT_PATTERNS, Redactor
from strongroom.services._arguments import parse_labels, parse_ref, parse_where
from strongroom.services._common import parse, validation_error, verify_chain
from strongroom.services.artifacts import ArtifactInput, ArtifactService
from strongroom.services.audit import Anchor, AuditService, merkle_root
from strongroom.services.catalog import CatalogService
from strongroom.services.logs import LogService
from strongroom.services.rehash import rehash_blobs
from strongroom.services.retention import DEFAULT_GRACE_SECONDS, GcProgress, RetentionService
from strongroom.services.runs import RunService
from strongroom.services.snapshots import SnapshotService
from strongroom.services.transitions import Transition, TransitionService
from strongroom.services.verify import (
    AuditWalk,
    AuditWalker,
    ProgressCallback,
    verify_vault,
    walk_audit,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_REDACT_PATTERNS",
    "Anchor",
    "ArtifactInput",
    "ArtifactService",
    "AuditService",
    "AuditWalk",
    "AuditWalker",
    "CatalogService",
    "GcProgress",
    "LogService",
    "ProgressCallback",
    "Redactor",
    "RetentionService",
    "RunService",
    "SnapshotService",
    "Transition",
    "TransitionService",
    "merkle_root",
    "parse",
    "parse_labels",
    "parse_ref",
    "parse_where",
    "rehash_blobs",
    "validation_error",
    "verify_chain",
    "verify_vault",
    "walk_audit",
]
