"""How the CLI shows who signed a governed act and whether the signature stands: "unsigned",
"NAME KEY_ID (verified)" or "NAME KEY_ID (NOT VERIFIED)" (checked the way `verify` checks it,
against the actors registered in the vault)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strongroom.models import Actor, ActorRole, ActSignature
from strongroom.services.identity import signature_problem

__all__ = ["signed_label"]


def signed_label(
    act: str,
    content: dict[str, Any],
    signature: ActSignature | None,
    actors: Mapping[str, Actor],
    role: ActorRole,
) -> str:
    if signature is None:
        return "unsigned"
    actor = actors.get(signature.key_id)
    why = signature_problem(act, content, signature, actor, role)
    who = f"{actor.name if actor else '?'} {signature.key_id}"
    return f"{who} (verified)" if why is None else f"{who} (NOT VERIFIED)"
