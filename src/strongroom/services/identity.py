"""Who may do governed acts: the people registered in a vault with their Ed25519 keys, and the
signatures governed acts carry (see `strongroom.models.identity`).

- `IdentityService.add` registers a key under a name with roles. The first key a vault gets
  must be an admin's and needs no signature (the vault's creator); every later registration
  is signed by an active admin. `revoke` ends a key from now on (signed by an admin; the last
  active admin cannot be revoked). Both are audited (``actors.added``, ``actors.revoked``)
  and bound into the chain.
- `signer` resolves a personal key to the active actor that may do an act, or refuses
  (`UnknownSigner`): never registered, revoked, or without the role.
- `sign` makes an act's `ActSignature`; `check_signature` is what `verify` uses: the
  signature must verify with the key's public key, and the key must have been active, with
  the role, when the act was signed (a later revocation does not undo earlier acts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from strongroom.errors import NotFound, PermissionDenied, UnknownSigner, ValidationError
from strongroom.integrity import SigningKey, key_id_for, verify_signature
from strongroom.models import (
    Actor,
    ActorRole,
    ActSignature,
    AuditEvent,
    act_payload,
    utcnow,
)
from strongroom.ports import RegistryRecords
from strongroom.services._common import parse

__all__ = ["IdentityService", "sign_act", "signature_problem"]


def sign_act(act: str, content: dict[str, Any], key: SigningKey) -> ActSignature:
    """``key``'s signature over act ``act`` deciding ``content``, made now."""
    at = utcnow()
    return ActSignature(
        key_id=key.key_id,
        signed_at=at,
        signature=key.sign(act_payload(act, content, key.key_id, at)),
    )


def signature_problem(
    act: str,
    content: dict[str, Any],
    signature: ActSignature,
    actor: Actor | None,
    role: ActorRole,
) -> str | None:
    """Why ``signature`` of act ``act`` over ``content`` does not stand (None: it does), given
    the registered ``actor`` of its key (None: never registered)."""
    if actor is None:
        return f"it is signed with key {signature.key_id}, which is not registered in the vault"
    payload = act_payload(act, content, signature.key_id, signature.signed_at)
    if not verify_signature(actor.public_key, payload, signature.signature):
        return (
            f"its signature by key {signature.key_id} ({actor.name}) does not match what it "
            "records (the record was edited after signing, or signed by another key)"
        )
    if not actor.active_at(signature.signed_at):
        return (
            f"it was signed by key {signature.key_id} ({actor.name}) at "
            f"{signature.signed_at.isoformat()}, when that key was not registered or already "
            "revoked"
        )
    if not actor.may(role):
        return (
            f"it was signed by key {signature.key_id} ({actor.name}), which does not hold the "
            f"{role.value} role"
        )
    return None


class IdentityService:
    def __init__(self, records: RegistryRecords) -> None:
        self.records = records

    async def actors(self) -> list[Actor]:
        """Every registered key, oldest first, revoked ones included."""
        return await self.records.list_actors()

    async def actor(self, key_id: str) -> Actor:
        return await self.records.get_actor(key_id)

    async def find(self, key_id: str) -> Actor | None:
        try:
            return await self.records.get_actor(key_id)
        except NotFound:
            return None

    async def signer(self, key: SigningKey, role: ActorRole, *, operation: str) -> Actor:
        """The registered, active actor of ``key`` who may act as ``role``; `UnknownSigner`
        otherwise, saying which command fixes it."""
        actor = await self.find(key.key_id)
        if actor is None:
            raise UnknownSigner(
                f"key {key.key_id} is not registered in this vault: an admin registers it "
                f"with `strongroom actors add NAME --public-key FILE --role {role.value}` "
                "(`strongroom keys show` prints the public key)",
                operation=operation,
                key_id=key.key_id,
                reason="unregistered",
            )
        if not actor.active_at(utcnow()):
            raise UnknownSigner(
                f"key {key.key_id} ({actor.name}) was revoked at "
                f"{actor.revoked_at.isoformat() if actor.revoked_at else '?'}: "
                "register a new key (`strongroom keys init`, then `strongroom actors add`)",
                operation=operation,
                key_id=key.key_id,
                reason="revoked",
            )
        if not actor.may(role):
            raise UnknownSigner(
                f"key {key.key_id} ({actor.name}) does not hold the {role.value} role "
                f"(it has: {', '.join(r.value for r in actor.roles)})",
                operation=operation,
                key_id=key.key_id,
                reason="missing_role",
                role=role.value,
            )
        return actor

    async def add(
        self,
        name: str,
        public_key: str,
        roles: Iterable[ActorRole | str],
        *,
        signer: SigningKey | None = None,
    ) -> Actor:
        """Register ``public_key`` (64 hex) as ``name`` with ``roles``. The vault's first key
        must hold ``admin`` and needs no ``signer``; every later one is signed by an active
        admin's key (`UnknownSigner`, `PermissionDenied` otherwise). `Conflict` if the key is
        registered already (a key is one person's; rotate by adding a new key)."""
        operation = "actors.add"
        public = public_key.strip().lower()
        key_id = key_id_for(public)
        wanted = sorted({ActorRole(r) for r in roles})
        existing = await self.records.list_actors()
        admin: Actor | None = None
        if existing:
            if signer is None:
                raise PermissionDenied(
                    "registering a key needs an admin's signature: pass the admin's key "
                    "(strongroom actors add ... --key PATH, or $STRONGROOM_SIGNING_KEY)",
                    operation=operation,
                    reason="admin_signature_required",
                )
            admin = await self.signer(signer, ActorRole.ADMIN, operation=operation)
        elif ActorRole.ADMIN not in wanted:
            raise ValidationError(
                "the first key registered in a vault must hold the admin role (it registers "
                "everyone else): add --role admin",
                operation=operation,
                reason="first_actor_not_admin",
            )
        actor = parse(
            Actor,
            {
                "key_id": key_id,
                "name": name,
                "public_key": public,
                "roles": wanted,
                "added_by": admin.key_id if admin else None,
            },
            operation=operation,
        )
        if signer is not None and admin is not None:
            actor = actor.model_copy(
                update={"added_signature": sign_act("register_actor", actor.registration(), signer)}
            )
        await self.records.insert_actor(
            actor,
            audit=AuditEvent(
                event="actors.added",
                actor=admin.name if admin else name,
                subject_type="actor",
                subject_id=key_id,
                details={
                    "name": actor.name,
                    "roles": [r.value for r in actor.roles],
                    "signed_by": admin.key_id if admin else None,
                    "first_admin": admin is None,
                },
            ),
        )
        return actor

    async def revoke(self, key_id: str, *, reason: str, signer: SigningKey) -> Actor:
        """End key ``key_id`` from now on, signed by an active admin. Earlier acts of the key
        keep verifying; later ones are refused. The last active admin cannot be revoked (the
        vault would have nobody left to register anyone)."""
        operation = "actors.revoke"
        if not reason.strip():
            raise ValidationError("a revocation needs a reason", operation=operation)
        admin = await self.signer(signer, ActorRole.ADMIN, operation=operation)
        target = await self.records.get_actor(key_id)
        now = utcnow()
        admins = [
            a
            for a in await self.records.list_actors()
            if a.active_at(now) and ActorRole.ADMIN in a.roles
        ]
        if target.active_at(now) and [a.key_id for a in admins] == [key_id]:
            raise PermissionDenied(
                f"key {key_id} ({target.name}) is the vault's last active admin: register "
                "another admin first",
                operation=operation,
                key_id=key_id,
                reason="last_admin",
            )
        content = _revocation(key_id, reason, now)
        return await self.records.revoke_actor(
            key_id,
            at=now,
            by=admin.key_id,
            reason=reason,
            signature=sign_act("revoke_actor", content, signer),
            audit=AuditEvent(
                event="actors.revoked",
                actor=admin.name,
                subject_type="actor",
                subject_id=key_id,
                details={"name": target.name, "reason": reason, "signed_by": admin.key_id},
            ),
        )

    async def check_registry(self, actors: Sequence[Actor]) -> list[tuple[Actor, str]]:
        """Each registration or revocation among ``actors`` whose admin signature does not
        stand, with why (verify)."""
        by_id = {a.key_id: a for a in actors}
        found: list[tuple[Actor, str]] = []
        for actor in actors:
            if actor.added_by is None:
                if actor.added_signature is not None or any(
                    a.added_by is None and a.added_at < actor.added_at for a in actors
                ):
                    found.append((actor, "it claims to be the vault's first admin, but is not"))
            elif actor.added_signature is None:
                found.append((actor, "its registration carries no admin signature"))
            else:
                why = signature_problem(
                    "register_actor",
                    actor.registration(),
                    actor.added_signature,
                    by_id.get(actor.added_signature.key_id),
                    ActorRole.ADMIN,
                )
                if why is None and actor.added_signature.key_id != actor.added_by:
                    why = "its registration is signed by another key than the admin it names"
                if why is not None:
                    found.append((actor, f"registration: {why}"))
            if actor.revoked_at is not None:
                why = _revocation_problem(actor, by_id)
                if why is not None:
                    found.append((actor, f"revocation: {why}"))
        return found


def _revocation(key_id: str, reason: str, at: datetime) -> dict[str, Any]:
    """What an admin signs when revoking a key."""
    return {"key_id": key_id, "reason": reason, "revoked_at": at.isoformat(timespec="microseconds")}


def _revocation_problem(actor: Actor, by_id: dict[str, Actor]) -> str | None:
    signature = actor.revoke_signature
    if signature is None or actor.revoked_at is None:
        return "it carries no admin signature"
    content = _revocation(actor.key_id, actor.revoke_reason or "", actor.revoked_at)
    why = signature_problem(
        "revoke_actor", content, signature, by_id.get(signature.key_id), ActorRole.ADMIN
    )
    if why is None and signature.key_id != actor.revoked_by:
        return "it is signed by another key than the admin it names"
    return why
