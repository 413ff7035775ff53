"""What the registry service returns (also what `strongroom registry ... --json` prints)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from strongroom.models import (
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    GovernanceLevel,
)

__all__ = [
    "DefinitionSummary",
    "MoveResult",
    "PublishResult",
    "RegistryHistory",
    "RegistryPolicy",
]


@dataclass(frozen=True)
class RegistryPolicy:
    """Who may move what to ``production``.

    ``production_approval_level``: promoting to production a definition that governs
    execution at this level or above needs an active promotion approval (None: never).
    A definition governs execution at the highest governance level of the tools it defines
    (tool manifest) or uses (playbook); a sandbox policy always counts as governing at the
    threshold (it confines every tool that names it). Project configs never need one.

    ``allow_self_approval``: may the publisher of a version approve it (its tools, its
    promotion)? False by default: `SelfApproval`. Signed on both sides, the publisher is the
    publisher's key, whatever names are used.

    ``require_signed_approvals``: an approval of a tool version at A2 or above, of a
    production promotion that needs one, or of a run (a run approval lets the run's A2+
    tools execute), must be signed with a registered personal key (`SignatureRequired`
    otherwise). On by default; when False such an unsigned approval is accepted and its
    audit entry records that the policy allowed it.

    ``require_signed_publications``: a definition that governs execution at A2 or above
    (a manifest with an A2+ tool, a playbook that may run one, a sandbox policy) must be
    published signed with a publisher's registered key, so that the four-eyes rule can tell
    its approver from its publisher by key. On by default.

    ``require_signed_production_moves``: every promotion and rollback of the ``production``
    channel must be signed with an operator's registered key. On by default.

    ``require_signed_forced_resume``: ``resume --force`` (running a run on with definitions
    that changed since it started) must be signed with an operator's registered key. Off by
    default; a forced resume is audited either way.
    """

    production_approval_level: GovernanceLevel | None = GovernanceLevel.A2
    allow_self_approval: bool = False
    require_signed_approvals: bool = True
    require_signed_publications: bool = True
    require_signed_production_moves: bool = True
    require_signed_forced_resume: bool = False


class PublishResult(BaseModel):
    """``created`` False: identical content was already published (nothing was written)."""

    version: DefinitionVersion
    created: bool
    object_path: str = Field(description="Catalog path of the stored definition.")
    unresolved: list[str] = Field(
        default_factory=list,
        description="References an imported definition (one keeping another system's "
        "original under ``extensions``) names that are not in the registry yet: published "
        "anyway, not runnable until they are.",
    )
    unbound_tools: list[str] = Field(
        default_factory=list,
        description="Tools of a manifest without an entrypoint: published, not runnable "
        "until bound (`strongroom registry bind`).",
    )


class MoveResult(BaseModel):
    """``moved`` False: the channel already pointed there (nothing was written)."""

    move: ChannelMove
    moved: bool
    version: str = Field(description="Label of the version the channel now points at.")


class DefinitionSummary(BaseModel):
    kind: DefinitionKind
    definition_id: str
    latest: DefinitionVersion
    version_count: int
    channels: dict[Channel, str] = Field(description="Channel -> version label it points at.")


class RegistryHistory(BaseModel):
    kind: DefinitionKind
    definition_id: str
    versions: list[DefinitionVersion] = Field(description="Oldest first.")
    moves: list[ChannelMove] = Field(description="Every channel move, oldest first.")
    channels: dict[Channel, str] = Field(description="Channel -> version label it points at.")
