"""The signed acts' part of `strongroom verify`: the actor registry replayed in audit-chain
order from the vault's one first admin (`trusted_actors`), then every signed act (a
publication, a channel move, an approval and its revocation) against it: the signature must
verify with a trusted key that held the act's role, and the act must have entered the chain
after the key's registration and before its revocation. An approval signed by the key that
signed what it approves (four-eyes broken) is reported too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from strongroom.models import ActorRole, ActSignature, DefinitionVersion, VerifyProblem
from strongroom.ports import MetadataStore, RegistryRecords
from strongroom.services.identity import AUDIT_ACTS, TrustedActors, trusted_actors

__all__ = ["check_signatures"]


def _bad(kind: str, subject: str, message: str, key_id: str | None) -> VerifyProblem:
    return VerifyProblem(
        kind=kind,
        code="integrity_error",
        subject=subject,
        message=message,
        details={"reason": "bad_signature", "key_id": key_id},
    )


@dataclass(frozen=True)
class _Act:
    """One signed act to check: what was signed (``act``, ``content``), the signature, the
    role it needs, and how a problem with it is reported (``kind``, ``subject``, ``label``)."""

    act: str
    content: dict[str, Any]
    signature: ActSignature
    role: ActorRole
    kind: str
    subject: str
    label: str


class _Checker:
    def __init__(self, store: MetadataStore, trusted: TrustedActors) -> None:
        self.store = store
        self.trusted = trusted
        self.problems: list[VerifyProblem] = []
        self.signed = 0

    async def act(self, binding: tuple[str, str], act: _Act, *, newest: bool = False) -> None:
        """Check one signed act, bound in the chain as ``binding`` (type, id) (its first
        entry; ``newest``: its newest, for a revocation, the record's last write)."""
        span = await self.store.binding_span(*binding)
        self.at(None if span is None else span[1 if newest else 0], act)

    def at(self, seq: int | None, act: _Act) -> None:
        """Check one signed act that entered the chain at entry ``seq``."""
        self.signed += 1
        why = self.trusted.act_problem(act.act, act.content, act.signature, act.role, seq)
        if why is not None:
            self.problems.append(
                _bad(act.kind, act.subject, f"{act.label}: {why}", act.signature.key_id)
            )

    def audited(self, seq: int, subject: str, signed: Any) -> None:
        """Check the signed act an audit entry carries (``signed_act`` of its details)."""
        where = f"audit entry {seq}"
        try:
            if not isinstance(signed, dict):
                raise ValueError("not an object")
            act, content = signed.get("act"), signed.get("content")
            signature = ActSignature.model_validate(signed.get("signature"))
            if act not in AUDIT_ACTS or not isinstance(content, dict):
                raise ValueError(f"an unknown act {str(act)[:40]!r} or no content")
        except (ValueError, pydantic.ValidationError) as exc:
            self.problems.append(
                _bad(
                    "audit", where, f"{where}: a signed act that does not parse ({exc})"[:500], None
                )
            )
            return
        if content.get("run_id") != subject:
            self.problems.append(
                _bad(
                    "audit",
                    where,
                    f"{where}: its signed {act} is about {str(content.get('run_id'))[:80]}, "
                    f"not {subject[:80]} (a signature copied from another entry)",
                    signature.key_id,
                )
            )
        self.at(
            seq,
            _Act(
                act=act,
                content=content,
                signature=signature,
                role=AUDIT_ACTS[act],
                kind="audit",
                subject=where,
                label=f"{where} ({act} of {subject[:80]})",
            ),
        )


async def check_signatures(
    records: RegistryRecords,
    versions: list[DefinitionVersion],
    acts: Mapping[int, tuple[str, Any]] | None = None,
) -> tuple[dict[str, int], list[VerifyProblem]]:
    """Check every signed act of the registry (``versions``: every published version, as
    the caller listed them) and the signed acts only the audit chain records (``acts``:
    entry seq -> (subject id, signed act)); returns (counts, problems)."""
    if not isinstance(records, MetadataStore):  # pragma: no cover - every store is both
        raise TypeError("the registry's records store must also be the metadata store")
    actors = await records.list_actors()
    trusted = await trusted_actors(records, actors)
    check = _Checker(records, trusted)
    for actor, why in trusted.problems:
        check.problems.append(
            _bad("actor", actor.key_id, f"actor {actor.name} (key {actor.key_id}): {why}", None)
        )
    publishers: dict[str, str] = {}  # digest -> key id that signed its publication
    definitions: dict[tuple[Any, str], None] = {}
    for version in versions:
        definitions[(version.kind, version.definition_id)] = None
        if version.signature is None:
            continue
        publishers[version.digest] = version.signature.key_id
        ident = f"{version.kind.value}/{version.definition_id}@{version.version}"
        await check.act(
            ("definition", ident),
            _Act(
                act="publish",
                content=version.signed_content(),
                signature=version.signature,
                role=ActorRole.PUBLISHER,
                kind="registry",
                subject=ident,
                label=f"{ident} published by {version.publisher}",
            ),
        )
    for kind, definition_id in definitions:
        for move in await records.list_channel_moves(kind, definition_id):
            if move.signature is None:
                continue
            await check.act(
                ("channel_move", move.move_id),
                _Act(
                    act="move",
                    content=move.signed_content(),
                    signature=move.signature,
                    role=ActorRole.OPERATOR,
                    kind="registry",
                    subject=f"{kind.value}/{definition_id}#{move.channel.value}:{move.move_id}",
                    label=f"channel move {move.move_id} by {move.actor}",
                ),
            )
    for approval in await records.list_approvals():
        subject = approval.approval_id
        if approval.signature is not None:
            await check.act(
                ("approval", subject),
                _Act(
                    act="approve",
                    content=approval.signed_content(),
                    signature=approval.signature,
                    role=ActorRole.APPROVER,
                    kind="approval",
                    subject=subject,
                    label=f"approval {subject} by {approval.actor}",
                ),
            )
            digest = getattr(approval.target, "digest", None)
            if digest is not None and publishers.get(digest) == approval.signature.key_id:
                check.problems.append(
                    _bad(
                        "approval",
                        subject,
                        f"approval {subject} is signed by key {approval.signature.key_id}, "
                        "which signed the publication it approves (self-approval)",
                        approval.signature.key_id,
                    )
                )
        if approval.revoke_signature is not None:
            await check.act(
                ("approval", subject),
                _Act(
                    act="revoke_approval",
                    content=approval.revocation_content(),
                    signature=approval.revoke_signature,
                    role=ActorRole.APPROVER,
                    kind="approval",
                    subject=subject,
                    label=f"the revocation of approval {subject} by {approval.revoked_by}",
                ),
                newest=True,
            )
    for seq, (subject, signed) in sorted((acts or {}).items()):
        check.audited(seq, subject, signed)
    return {"actors": len(actors), "signed_acts": check.signed}, check.problems
