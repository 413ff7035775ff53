"""Who did a governed act: the people registered in a vault with their public keys (`Actor`),
and the signature a governed act carries (`ActSignature`).

A person is identified by their Ed25519 key, never by a name: names are labels, and one
person may hold several keys over time (a rotation adds the new key and revokes the old).
The four-eyes and self-approval rules compare key ids. An act is signed over `act_payload`:
the canonical JSON of what the act is (its record's fields that say what was decided), the
signer's key id and the signing time; `verify` checks every signature against the actor as
it stood at that time (a later revocation does not undo earlier acts)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, field_validator

from strongroom.ids import ActorName
from strongroom.models._base import Record, Text, UtcDatetime, utcnow
from strongroom.models.canonical import canonical_json, sorted_json

__all__ = ["KEY_ID_PATTERN", "ActSignature", "Actor", "ActorRole", "act_payload"]

KEY_ID_PATTERN = r"^[0-9a-f]{16}$"


class ActorRole(StrEnum):
    """What a registered key may do. ``publisher``: publish definitions; ``approver``:
    approve tools, promotions and runs; ``operator``: promote, roll back, force-resume runs;
    ``admin``: register and revoke actors (and everything else)."""

    PUBLISHER = "publisher"
    APPROVER = "approver"
    OPERATOR = "operator"
    ADMIN = "admin"


class ActSignature(Record):
    """An Ed25519 signature over `act_payload` of one act, by the key ``key_id``."""

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    signed_at: UtcDatetime
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


class Actor(Record):
    """A person's key registered in the vault. ``key_id`` is derived from ``public_key``
    (`strongroom.integrity.key_id_for`); the service checks it."""

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    name: ActorName
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="Raw Ed25519 key, hex.")
    roles: list[ActorRole] = Field(min_length=1, max_length=4)
    added_at: UtcDatetime = Field(default_factory=utcnow)
    added_by: str | None = Field(
        default=None,
        pattern=KEY_ID_PATTERN,
        description="Key id of the admin who registered this key (None: the vault's first "
        "admin, registered before there was anyone to sign).",
    )
    added_signature: ActSignature | None = Field(
        default=None, description="The admin's signature over the registration."
    )
    revoked_at: UtcDatetime | None = None
    revoked_by: str | None = Field(default=None, pattern=KEY_ID_PATTERN)
    revoke_reason: Annotated[Text, Field(max_length=1000)] | None = None
    revoke_signature: ActSignature | None = Field(
        default=None, description="The admin's signature over the revocation."
    )

    @field_validator("roles")
    @classmethod
    def _sorted_roles(cls, roles: list[ActorRole]) -> list[ActorRole]:
        """Each role once, in one order (so a registration signs the same bytes however
        its roles were listed)."""
        return sorted(set(roles))

    def active_at(self, moment: datetime) -> bool:
        """Registered at ``moment`` and not yet revoked."""
        if moment < self.added_at:
            return False
        return self.revoked_at is None or moment < self.revoked_at

    def may(self, role: ActorRole) -> bool:
        """Holds ``role`` (an admin may do everything)."""
        return role in self.roles or ActorRole.ADMIN in self.roles

    def revocation_content(self) -> dict[str, Any]:
        """What an admin signs when revoking this key (its ``revoked_at`` and
        ``revoke_reason`` as they are, or will be, stored)."""
        at = self.revoked_at
        return {
            "key_id": self.key_id,
            "reason": self.revoke_reason or "",
            "revoked_at": at.isoformat(timespec="microseconds") if at else None,
        }

    def registration(self) -> dict[str, Any]:
        """What an admin signs when registering this key."""
        return self.model_dump(
            mode="json",
            include={"key_id", "name", "public_key", "roles", "added_at", "added_by"},
        )


def act_payload(
    act: str,
    content: dict[str, Any],
    key_id: str,
    signed_at: datetime,
    *,
    before_jcs: bool = False,
) -> bytes:
    """The bytes a signature of act ``act`` (``approve``, ``publish``, ``register_actor``...)
    covers: RFC 8785 canonical JSON of the act, what it decided, who signs and when (UTC, to
    the microsecond). ``before_jcs``: the form signatures made before RFC 8785 covered
    (`sorted_json`; the same bytes unless ``content`` holds a float or a big integer)."""
    act_value = {
        "strongroom_act": act,
        "content": content,
        "key_id": key_id,
        "signed_at": signed_at.isoformat(timespec="microseconds"),
    }
    return sorted_json(act_value) if before_jcs else canonical_json(act_value)
