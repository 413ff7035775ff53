"""Retention records: holds that stop deletion, the rules that say what may go, the plan
`strongroom gc plan` writes and `gc apply` carries out, and what a deletion leaves in the audit
chain (its tombstone)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, model_validator

from strongroom.ids import ActorName, SafeName
from strongroom.models._base import Record, SingleLineText, UtcDatetime, utcnow
from strongroom.models.runs import TERMINAL_STATUSES, RunStatus

__all__ = [
    "GC_ITEM_KINDS",
    "MAX_GRACE_SECONDS",
    "RUN_DELETED_EVENT",
    "GcItem",
    "GcItemKind",
    "GcPlan",
    "GcResult",
    "Hold",
    "HoldQuery",
    "RetentionPolicy",
    "RetentionRule",
    "RunDeletion",
]

RUN_DELETED_EVENT: Final = "run.deleted"
"""The audit event of a run's deletion: its tombstone (subject ``run:<run_id>``)."""

Reason = Annotated[SingleLineText, Field(min_length=1, max_length=1000)]


class Hold(Record):
    """A legal or operational hold: while it is active (not released), no path deletes the
    run it names, or any run of the project it names."""

    hold_id: str = Field(min_length=1, max_length=64)
    run_id: str | None = Field(default=None, min_length=1, max_length=64)
    project: SafeName | None = None
    reason: Reason
    actor: ActorName
    created_at: UtcDatetime = Field(default_factory=utcnow)
    released_at: UtcDatetime | None = None
    released_by: ActorName | None = None
    release_reason: Reason | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if (self.run_id is None) == (self.project is None):
            raise ValueError("a hold names exactly one of run_id and project")
        released = (self.released_at, self.released_by, self.release_reason)
        if any(v is None for v in released) and any(v is not None for v in released):
            raise ValueError("released_at, released_by and release_reason go together")
        return self

    @property
    def active(self) -> bool:
        return self.released_at is None

    @property
    def scope(self) -> str:
        return f"run:{self.run_id}" if self.run_id is not None else f"project:{self.project}"


class HoldQuery(Record):
    run_id: str | None = Field(default=None, max_length=64)
    project: SafeName | None = None
    include_released: bool = False
    limit: int = Field(default=1000, ge=1, le=10_000)


def _terminal(statuses: list[RunStatus]) -> list[RunStatus]:
    for status in statuses:
        if status not in TERMINAL_STATUSES:
            raise ValueError(
                f"retention applies to ended runs only: {status.value!r} is not completed, "
                "failed or cancelled"
            )
    return statuses


class RetentionRule(Record):
    """Which ended runs a rule covers (``project``, ``playbook_id``, ``statuses``) and how long
    they are kept: ``keep_days`` after they ended, and/or the newest ``keep_last`` of each
    (project, playbook) group. A covered run goes when it is older than ``keep_days`` (if
    given) and not among the newest ``keep_last`` (if given)."""

    project: SafeName | None = Field(default=None, description="None: every project.")
    playbook_id: SafeName | None = Field(default=None, description="None: every playbook.")
    statuses: list[RunStatus] = Field(
        default_factory=lambda: sorted(TERMINAL_STATUSES),
        min_length=1,
        max_length=3,
        description="Ended statuses the rule covers (default all three).",
    )
    keep_days: int | None = Field(default=None, ge=0, le=36_500)
    keep_last: int | None = Field(default=None, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _terminal(self.statuses)
        if self.keep_days is None and self.keep_last is None:
            raise ValueError("a rule needs keep_days, keep_last or both")
        return self

    def covers(self, project: str, playbook_id: str | None, status: RunStatus) -> bool:
        return (
            (self.project is None or self.project == project)
            and (self.playbook_id is None or self.playbook_id == playbook_id)
            and status in self.statuses
        )


class RetentionPolicy(Record):
    """Ordered rules: the first rule that covers a run decides its fate; a run no rule covers
    is kept. Catalog namespaces add their own ``retention_days`` for their objects."""

    rules: list[RetentionRule] = Field(default_factory=list, max_length=100)


MAX_GRACE_SECONDS: Final = 10 * 365 * 24 * 3600
"""The longest grace period a plan may have (ten years)."""

GcItemKind = Literal["run", "object", "blob", "staging", "multipart"]
GC_ITEM_KINDS: Final = ("run", "object", "blob", "staging", "multipart")


class GcItem(Record):
    """One thing a plan would delete."""

    kind: GcItemKind
    id: str = Field(min_length=1, max_length=1024, description="run id, object id, sha256, path")
    bytes: int = Field(default=0, ge=0, description="Bytes freed (runs: blobs only they use).")
    reason: str = Field(max_length=1000)
    rule: int | None = Field(default=None, ge=0, description="The policy rule (runs).")
    digest: str | None = Field(
        default=None,
        max_length=64,
        description="The record's digest when planned: apply refuses it if it changed.",
    )
    blobs: list[str] = Field(
        default_factory=list, description="Runs and objects: the blobs only they reference."
    )


class GcPlan(Record):
    """What `gc apply` may delete: exactly these items, each re-checked as it goes."""

    plan_id: str
    created_at: UtcDatetime = Field(default_factory=utcnow)
    actor: ActorName
    grace_seconds: int = Field(ge=0, le=MAX_GRACE_SECONDS)
    policy: RetentionPolicy | None = None
    items: list[GcItem] = Field(default_factory=list)
    totals: dict[str, int] = Field(default_factory=dict)
    bytes: int = Field(default=0, ge=0)
    kept_held: int = Field(
        default=0, ge=0, description="Runs a policy would delete but a hold keeps."
    )


class GcResult(Record):
    """What `gc apply` did with a plan."""

    plan_id: str
    deleted: dict[str, int] = Field(default_factory=dict)
    bytes: int = Field(default=0, ge=0)
    refused: list[dict[str, Any]] = Field(
        default_factory=list, description="Items not deleted, and why (held, changed...)."
    )
    gone: int = Field(default=0, ge=0, description="Items already deleted (a resumed apply).")


class RunDeletion(Record):
    """The ``details`` of a `RUN_DELETED_EVENT` entry: what went, why and by which rule. The
    entry (and any entry after it in the same transaction) binds each deleted record as
    deleted, so verify accepts exactly these disappearances."""

    run_id: str
    reason: str = Field(max_length=1000)
    policy_rule: int | None = None
    plan_id: str | None = None
    project: str
    status: RunStatus
    run_digest: str = Field(description="The run record's digest when it went.")
    log_head: dict[str, Any] | None = Field(
        default=None, description="{seq, hash} of the log chain's head when it went."
    )
    records: dict[str, int] = Field(default_factory=dict, description="Records deleted per type.")
    manifest_sha256: str = Field(
        description="sha256 of the canonical JSON list of [type, id, digest] of every deleted "
        "record, in order: what exactly went."
    )
    blob_count: int = Field(ge=0, description="Distinct blobs the run's records used.")
    blobs_sha256: str = Field(
        description="sha256 of the canonical JSON list of those blob digests, sorted (blobs "
        "another record still uses stay)."
    )
