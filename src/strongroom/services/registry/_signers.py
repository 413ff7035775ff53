"""Who signed a governed act, as people read it: ``unsigned``, ``NAME KEY_ID (verified)`` or
``NAME KEY_ID (NOT VERIFIED)``. The signature is checked the way `verify` checks one against
the actors registered in the vault (it matches what the record says now, and the key was
registered, active and held the act's role when it signed); `verify` also checks where in
the audit chain each act entered, which a label for one act does not.

`signed_label` labels one act; `entry_signers` labels the governed acts a page of audit
entries records, reading each act's record (the approval, the published version, the channel
move in the entry, the actor) once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from strongroom.errors import NotFound
from strongroom.models import (
    Actor,
    ActorRole,
    ActSignature,
    AuditEntry,
    ChannelMove,
    DefinitionKind,
)
from strongroom.ports import RegistryRecords
from strongroom.services.identity import AUDIT_ACTS, signature_problem

__all__ = ["UNSIGNED", "entry_signers", "signed_label"]

UNSIGNED = "unsigned"


def signed_label(
    act: str,
    content: dict[str, Any],
    signature: ActSignature | None,
    actors: Mapping[str, Actor],
    role: ActorRole,
) -> str:
    """The label of act ``act`` deciding ``content``, signed with ``signature`` (or not);
    ``actors``: the registered actors by key id."""
    if signature is None:
        return UNSIGNED
    actor = actors.get(signature.key_id)
    why = signature_problem(act, content, signature, actor, role)
    who = f"{actor.name if actor else '?'} {signature.key_id}"
    return f"{who} (verified)" if why is None else f"{who} (NOT VERIFIED)"


async def entry_signers(records: RegistryRecords, entries: Sequence[AuditEntry]) -> dict[int, str]:
    """Entry seq -> the label of the governed act it records, for the entries that record
    one (a publication, a channel move, an approval or its revocation, an actor's
    registration or revocation, a forced resume); other entries are left out."""
    actors = {a.key_id: a for a in await records.list_actors()}
    out: dict[int, str] = {}
    for entry in entries:
        try:
            label = await _label(records, entry, actors)
        except (NotFound, pydantic.ValidationError, ValueError, KeyError, TypeError):
            label = "record not found" if "signed_by" in entry.details else None
        if label is not None:
            out[entry.seq] = label
    return out


async def _label(
    records: RegistryRecords, entry: AuditEntry, actors: Mapping[str, Actor]
) -> str | None:
    details = entry.details
    event = entry.event
    signed = details.get("signed_act")
    if isinstance(signed, dict) and signed.get("act") in AUDIT_ACTS:
        act = str(signed["act"])
        signature = ActSignature.model_validate(signed.get("signature"))
        return signed_label(act, dict(signed["content"]), signature, actors, AUDIT_ACTS[act])
    if event in ("registry.approved", "registry.revoked"):
        approval = await records.get_approval(entry.subject_id)
        if event == "registry.approved":
            return signed_label(
                "approve",
                approval.signed_content(),
                approval.signature,
                actors,
                ActorRole.APPROVER,
            )
        return signed_label(
            "revoke_approval",
            approval.revocation_content(),
            approval.revoke_signature,
            actors,
            ActorRole.APPROVER,
        )
    if event == "registry.published":
        version = await records.get_definition_version(
            DefinitionKind(entry.subject_type), entry.subject_id, version=str(details["version"])
        )
        return signed_label(
            "publish", version.signed_content(), version.signature, actors, ActorRole.PUBLISHER
        )
    if event in ("registry.promoted", "registry.rolled_back"):
        move = ChannelMove.model_validate(details["move"])
        return signed_label(
            "move", move.signed_content(), move.signature, actors, ActorRole.OPERATOR
        )
    if event in ("actors.added", "actors.revoked"):
        actor = await records.get_actor(entry.subject_id)
        if event == "actors.added":
            if actor.added_by is None:
                return "first admin (unsigned by design)"
            return signed_label(
                "register_actor",
                actor.registration(),
                actor.added_signature,
                actors,
                ActorRole.ADMIN,
            )
        return _revocation_label(actor, actors)
    if "signed_by" in details:
        return UNSIGNED
    return None


def _revocation_label(actor: Actor, actors: Mapping[str, Actor]) -> str:
    return signed_label(
        "revoke_actor",
        actor.revocation_content(),
        actor.revoke_signature,
        actors,
        ActorRole.ADMIN,
    )
