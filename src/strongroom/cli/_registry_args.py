"""Shared arguments of the `strongroom registry ...` commands: the --actor, --kind and --reason
options, and the parsers that turn their text (a definition kind, an ID@SELECTOR reference, a
channel name) into models, raising the CLI's usual ``ValidationError``/``NotFound`` so that
`registry.py` (publish and reading) and `registry_review.py` (channels and approvals) report
bad input identically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strongroom.errors import NotFound, ValidationError
from strongroom.integrity import SigningKey, load_signing_key
from strongroom.models import Channel, DefinitionKind, Ref
from strongroom.services import parse_ref as services_parse_ref
from strongroom.vault import Vault

__all__ = [
    "ActorOption",
    "KeyOption",
    "KindOption",
    "ReasonOption",
    "SignFlag",
    "infer_kind",
    "parse_channel",
    "parse_kind",
    "parse_ref",
    "personal_key",
]

# Governed acts are recorded as their signer, or unsigned as the OS user / database role that
# makes them: a typed name would let anyone act as anyone. The option stays (hidden, without
# $STRONGROOM_ACTOR) only to refuse it with a message that says what to do instead.
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", hidden=True, help="Not accepted: sign with --key or --sign."),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Sign the act with this personal key (strongroom keys init); its registered "
        "name is then the actor.",
    ),
]
SignFlag = Annotated[
    bool,
    typer.Option(
        "--sign",
        help="Sign the act with your personal key ($STRONGROOM_SIGNING_KEY, else "
        "~/.config/strongroom/signing-key.pem).",
    ),
]


def personal_key(key: Path | None, sign: bool, actor: str | None = None) -> SigningKey | None:
    """The personal key a governed act is signed with: ``--key PATH``, the default key with
    ``--sign``, or None (unsigned: recorded as the OS user or database role). ``actor``: a
    ``--actor`` given anyway, refused."""
    if actor is not None:
        raise ValidationError(
            f"--actor {actor!r}: a governed act is recorded as whoever signs it (--key PATH or "
            "--sign), or, unsigned, as the OS user or database role that makes it; a typed "
            "name identifies nobody",
            operation="cli.registry",
            reason="actor_not_accepted",
        )
    if key is None and not sign:
        return None
    return load_signing_key(key, required=True)


KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind",
        "-k",
        help="tool_manifest, playbook, project_config or sandbox_policy (needed only when "
        "the id exists in several kinds).",
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")]


def parse_kind(value: str | None) -> DefinitionKind | None:
    if value is None:
        return None
    try:
        return DefinitionKind(value)
    except ValueError:
        raise ValidationError(
            f"--kind must be one of {', '.join(k.value for k in DefinitionKind)}, got {value!r}",
            operation="cli.registry",
            reason="bad_kind",
        ) from None


def parse_ref(text: str) -> Ref:
    """A reference from the command line (`strongroom.services.parse_ref`)."""
    return services_parse_ref(text, operation="cli.registry")


async def infer_kind(vault: Vault, ident: str, kind: DefinitionKind | None) -> DefinitionKind:
    if kind is not None:
        return kind
    kinds = await vault.registry.kinds_of(ident)
    if not kinds:
        raise NotFound(
            f"no definition {ident} in the registry", operation="cli.registry", definition_id=ident
        )
    if len(kinds) > 1:
        raise ValidationError(
            f"{ident} names a {' and a '.join(k.value for k in kinds)}: say which with --kind",
            operation="cli.registry",
            reason="ambiguous_id",
            kinds=[k.value for k in kinds],
        )
    return kinds[0]


def parse_channel(value: str, option: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise ValidationError(
            f"{option} must be draft, staging or production, got {value!r}",
            operation="cli.registry",
            reason="bad_channel",
        ) from None
