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
  the role, when the act was signed (a later revocation does not undo earlier acts).
- `who` decides who a governed act is recorded as: the signer's registered name, else the
  process's `principal` (the OS user, or the PostgreSQL role), never a name the caller typed
  that belongs to a registered person."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.errors import (
    NotFound,
    PermissionDenied,
    SerializationError,
    SignatureRequired,
    UnknownSigner,
    ValidationError,
)
from strongroom.integrity import SigningKey, key_id_for, verify_signature
from strongroom.models import (
    Actor,
    ActorRole,
    ActSignature,
    AuditEvent,
    act_payload,
    utcnow,
)
from strongroom.ports import MetadataStore, RegistryRecords
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import checked_reason, parse

__all__ = [
    "AUDIT_ACTS",
    "PRINCIPAL_PREFIXES",
    "IdentityService",
    "TrustedActors",
    "Who",
    "os_user",
    "sign_act",
    "signature_problem",
    "signed_audit_act",
    "trusted_actors",
]


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
    if not _signature_matches(act, content, signature, actor):
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


def _signature_matches(
    act: str, content: dict[str, Any], signature: ActSignature, actor: Actor
) -> bool:
    """Whether ``signature`` covers act ``act`` deciding ``content``: over its RFC 8785 form,
    or (a signature made before it) over the older sorted form of the same act."""
    at = signature.signed_at
    try:
        payload = act_payload(act, content, signature.key_id, at)
    except SerializationError:
        payload = None
    if payload is not None and verify_signature(actor.public_key, payload, signature.signature):
        return True
    older = act_payload(act, content, signature.key_id, at, before_jcs=True)
    return older != payload and verify_signature(actor.public_key, older, signature.signature)


# Governed acts that leave no record but their audit entry (a forced resume), and the role
# each needs. Their signature lives in the entry's details under ``signed_act`` (see
# `signed_audit_act`); verify checks every one it walks past.
AUDIT_ACTS: dict[str, ActorRole] = {"resume_force": ActorRole.OPERATOR}


def signed_audit_act(act: str, content: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The ``signed_act`` an audit entry of act ``act`` (one of `AUDIT_ACTS`) deciding
    ``content`` carries: the act, what it decided and ``key``'s signature over both."""
    signature = sign_act(act, content, key)
    return {"act": act, "content": content, "signature": signature.model_dump(mode="json")}


# Who an unsigned act is recorded as: ``os:<user>`` (an embedded vault) or ``pg:<role>``.
# Registered names cannot take these forms, so a principal never reads as a person's name.
PRINCIPAL_PREFIXES = ("os:", "pg:")
# Characters a principal's name may hold; others become ``_``. Migration 0006's
# ``strongroom_principal()`` makes a PostgreSQL role's name safe the same way: keep in step.
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def os_user() -> str:
    """The name of the OS account this process runs as, from the account database by the
    effective uid (not ``$USER``, which anyone can set); ``uid-N`` when it has no entry."""
    try:
        import pwd
    except ImportError:  # pragma: no cover - not a POSIX system
        import getpass

        return _UNSAFE.sub("_", getpass.getuser())[:100] or "unknown"
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"
    return _UNSAFE.sub("_", name)[:100] or f"uid-{uid}"


@dataclass(frozen=True)
class Who:
    """Who a governed act is recorded as: ``name`` (the signer's registered name, or the
    ``principal`` when unsigned or named by the embedding application), the registered
    ``signer`` (None: unsigned) and the ``principal`` the process runs as."""

    name: str
    signer: Actor | None
    principal: str

    def audit(self) -> dict[str, Any]:
        """What an audit entry of the act records about who did it."""
        return {
            "principal": self.principal,
            "signed_by": self.signer.key_id if self.signer else None,
        }


@checked_arguments
class IdentityService:
    def __init__(self, records: RegistryRecords) -> None:
        self.records = records
        self._principal: str | None = None

    async def principal(self) -> str:
        """Who this process is to the vault, as far as the system can tell without a key:
        ``pg:<role>`` on PostgreSQL (``current_user``, which the database authenticated),
        else ``os:<user>`` (the OS account of the process)."""
        if self._principal is None:
            role = await self.records.session_role()
            self._principal = f"pg:{_UNSAFE.sub('_', role)[:100]}" if role else f"os:{os_user()}"
        return self._principal

    async def who(
        self,
        key: SigningKey | None,
        role: ActorRole,
        *,
        actor: str | None = None,
        operation: str,
    ) -> Who:
        """Who a governed act is recorded as. Signed (``key``): the key's registered,
        active actor with ``role`` (`UnknownSigner` otherwise). Unsigned: ``actor`` when the
        embedding application names one, else the `principal`; a name that is a registered
        person's, or that poses as a principal, is refused (`SignatureRequired`): only their
        key acts under their name."""
        principal = await self.principal()
        if key is not None:
            signer = await self.signer(key, role, operation=operation)
            return Who(signer.name, signer, principal)
        if actor is None or actor == principal:
            return Who(principal, None, principal)
        if actor.lower().startswith(PRINCIPAL_PREFIXES):
            raise SignatureRequired(
                f"{actor!r} names a system account this process is not ({principal}); "
                "unsigned acts are recorded as the account that makes them",
                operation=operation,
                reason="not_this_principal",
                actor=actor,
                principal=principal,
            )
        if any(a.name == actor for a in await self.records.list_actors()):
            raise SignatureRequired(
                f"{actor} is a registered person in this vault: an act under that name must "
                "be signed with their key (`--key PATH`); unsigned, it is recorded as "
                f"{principal}",
                operation=operation,
                reason="registered_name",
                actor=actor,
            )
        return Who(actor, None, principal)

    async def actors(self) -> list[Actor]:
        """Every registered key, oldest first, revoked ones included."""
        return await self.records.list_actors()

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
                f"with `strongroom actors add NAME --public-key {key.public_key_hex} --role "
                f"{role.value} --key ADMIN_KEY` (NAME: the person's name)",
                operation=operation,
                key_id=key.key_id,
                reason="unregistered",
            )
        if not actor.active_at(utcnow()):
            raise UnknownSigner(
                f"key {key.key_id} ({actor.name}) was revoked at "
                f"{actor.revoked_at.isoformat() if actor.revoked_at else '?'}: "
                "make a new key (`strongroom keys init --force`) and have an admin register "
                "it (`strongroom actors add NAME --public-key FILE --role ROLE --key "
                "ADMIN_KEY`, FILE being the .pub file keys init wrote)",
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
        if name.lower().startswith(PRINCIPAL_PREFIXES):
            raise ValidationError(
                f"{name!r}: a person's name cannot start with os: or pg: (those name the "
                "system accounts unsigned acts are recorded as)",
                operation=operation,
                reason="reserved_name",
            )
        public = public_key.strip().lower()
        key_id = key_id_for(public)
        wanted = sorted({ActorRole(r) for r in roles})
        existing = await self.records.list_actors()
        admin: Actor | None = None
        if existing:
            if signer is None:
                again = shlex.join(
                    [
                        "strongroom",
                        "actors",
                        "add",
                        name,
                        "--public-key",
                        public,
                        *(arg for role in wanted for arg in ("--role", role.value)),
                    ]
                )
                raise PermissionDenied(
                    "registering a key needs an admin's signature: pass the admin's key, "
                    f"{again} --key ADMIN_KEY (or --sign to use $STRONGROOM_SIGNING_KEY)",
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
        reason = checked_reason(reason, operation)
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
        content = target.model_copy(
            update={"revoked_at": now, "revoke_reason": reason}
        ).revocation_content()
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


@dataclass
class TrustedActors:
    """The actors whose registration traces back, in audit-chain order, to the vault's one
    first admin through valid admin signatures (what `verify` trusts), where in the chain
    each was registered and revoked, and what is wrong with the others."""

    valid: dict[str, Actor] = field(default_factory=dict)
    registered_at: dict[str, int] = field(default_factory=dict)  # key id -> audit seq
    revoked_at: dict[str, int] = field(default_factory=dict)  # key id -> audit seq
    problems: list[tuple[Actor, str]] = field(default_factory=list)

    def act_problem(
        self,
        act: str,
        content: dict[str, Any],
        signature: ActSignature,
        role: ActorRole,
        act_seq: int | None,
    ) -> str | None:
        """Why a signed act does not stand (None: it does): the signature must verify with a
        trusted key that held ``role``, and the act must have entered the audit chain
        (entry ``act_seq``) after the key's registration and before its revocation. The
        chain's order decides, not ``signed_at``, which the signer chose."""
        key_id = signature.key_id
        actor = self.valid.get(key_id)
        if actor is None:
            return f"it is signed with key {key_id}, which is not validly registered in the vault"
        why = signature_problem(act, content, signature, actor, role)
        if why is not None:
            return why
        if act_seq is None:
            return "it has no entry in the audit chain"
        if act_seq <= self.registered_at[key_id]:
            return f"it entered the audit chain (#{act_seq}) before key {key_id} was registered"
        revoked = self.revoked_at.get(key_id)
        if revoked is not None and act_seq >= revoked:
            return (
                f"it entered the audit chain (#{act_seq}) after key {key_id} ({actor.name}) was "
                f"revoked (#{revoked}), whatever time its signature claims"
            )
        return None


async def trusted_actors(store: MetadataStore, actors: Sequence[Actor]) -> TrustedActors:
    """Replay the actor registry in audit-chain order (see `TrustedActors`)."""
    trusted = TrustedActors()
    spans: dict[str, tuple[int, int]] = {}
    for actor in actors:
        span = await store.binding_span("actor", actor.key_id)
        if span is None:
            trusted.problems.append((actor, "it has no entry in the audit chain"))
        else:
            spans[actor.key_id] = span
    ordered = sorted((a for a in actors if a.key_id in spans), key=lambda a: spans[a.key_id][0])
    for index, actor in enumerate(ordered):
        created, last = spans[actor.key_id]
        why = _registration_problem(actor, index == 0, created, trusted)
        if why is not None:
            trusted.problems.append((actor, f"registration: {why}"))
            continue
        trusted.valid[actor.key_id] = actor
        trusted.registered_at[actor.key_id] = created
        if actor.revoked_at is not None:
            trusted.revoked_at[actor.key_id] = last
    for actor in ordered:
        if actor.key_id in trusted.valid and actor.revoked_at is not None:
            why = _revocation_problem(actor, trusted)
            if why is not None:
                trusted.problems.append((actor, f"revocation: {why}"))
    return trusted


def _registration_problem(
    actor: Actor, first: bool, created: int, trusted: TrustedActors
) -> str | None:
    if actor.added_by is None:
        if first and actor.added_signature is None:
            return None
        return "it claims to be the vault's first admin, but is not the first key registered"
    admin = trusted.valid.get(actor.added_by)
    if admin is None or actor.added_by == actor.key_id:
        return (
            f"it names key {actor.added_by} as the admin who registered it, which was not a "
            "validly registered admin before it"
        )
    signature = actor.added_signature
    if signature is None:
        return "it carries no admin signature"
    if signature.key_id != actor.added_by:
        return "it is signed by another key than the admin it names"
    return trusted.act_problem(
        "register_actor", actor.registration(), signature, ActorRole.ADMIN, created
    )


def _revocation_problem(actor: Actor, trusted: TrustedActors) -> str | None:
    signature = actor.revoke_signature
    if signature is None or actor.revoked_at is None:
        return "it carries no admin signature"
    if signature.key_id != actor.revoked_by:
        return "it is signed by another key than the admin it names"
    content = actor.revocation_content()
    seq = trusted.revoked_at[actor.key_id]
    if signature.key_id == actor.key_id:
        # An admin revoking their own key: it was active until this very entry.
        return signature_problem("revoke_actor", content, signature, actor, ActorRole.ADMIN)
    return trusted.act_problem("revoke_actor", content, signature, ActorRole.ADMIN, seq)
