"""The registry's part of `strongroom verify`.

- every published version's blob exists, re-hashes to its digest and has its recorded size;
- every channel move matches the ``move_digest`` its audit entry recorded (so an edited
  history row is caught), has an audit entry at all, and follows the previous move of its
  channel (``from_digest`` = the previous ``to_digest``); an audited move missing from the
  history (a deleted row) is reported too;
- every signed act (a publication, an approval, an actor's registration or revocation, and
  the acts only the audit chain records, such as a forced resume) carries a signature that
  verifies with its key, by a key that was registered, active and held the act's role when
  it signed (`strongroom.services.identity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strongroom.errors import StrongroomError
from strongroom.models import (
    AuditEntry,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    VerifyProblem,
    record_digest_as,
)
from strongroom.ports import BlobStore, RegistryRecords
from strongroom.ports.metadata import ChainRow
from strongroom.services.audit import AuditService
from strongroom.services.registry._signatures import check_signatures
from strongroom.services.rehash import rehash_blobs

__all__ = ["MOVE_EVENTS", "AuditActs", "collect_act", "collect_move", "verify_registry"]

# The signed acts the audit chain alone records: entry seq -> (subject id, ``signed_act``).
AuditActs = dict[int, tuple[str, Any]]

MOVE_EVENTS = frozenset({"registry.published", "registry.promoted", "registry.rolled_back"})


def _problem(subject: str, code: str, message: str, **details: object) -> VerifyProblem:
    return VerifyProblem(
        kind="registry", code=code, subject=subject, message=message, details=dict(details)
    )


async def verify_registry(
    records: RegistryRecords,
    blobs: BlobStore,
    audit: AuditService,
    *,
    verified: Mapping[str, int] | None = None,
    audited: Mapping[str, tuple[str, int]] | None = None,
    audited_through: int = 0,
    acts: Mapping[int, tuple[str, Any]] | None = None,
) -> tuple[dict[str, int], list[VerifyProblem]]:
    """Check the registry; returns (counts checked, problems). ``verified``: digest -> size
    of blobs the caller already re-hashed successfully (others are re-hashed here).
    ``audited``: what `collect_move` gathered from the audit rows the caller already walked,
    up to the row key ``audited_through`` (rows appended since are walked here), and ``acts``
    what `collect_act` gathered from them; None: the audit chain is walked here."""
    problems: list[VerifyProblem] = []
    checked = {"definition_versions": 0, "channel_moves": 0}
    everything: list[DefinitionVersion] = []

    later: dict[str, tuple[str, int]] = {}
    later_acts: AuditActs = {}
    # By the rows' own keys: a forged seq inside a body cannot send the walk back.
    async for row in audit.rows(0 if audited is None else audited_through):
        collect_move(later, row)
        collect_act(later_acts, row)
    if audited is None:
        audited = later
    elif later:  # moves audited while the caller walked on: a later row wins, as in one walk
        audited = {**audited, **later}
    acts = {**(acts or {}), **later_acts}

    seen_moves: set[str] = set()
    definitions = [
        (
            latest.kind,
            latest.definition_id,
            await records.list_definition_versions(latest.kind, latest.definition_id),
        )
        for latest in await records.list_definitions()
    ]
    sizes = await _blob_sizes(blobs, [v for _, _, vs in definitions for v in vs], verified)
    for kind, ident, versions in definitions:
        for version in versions:
            checked["definition_versions"] += 1
            everything.append(version)
            problem = _version_blob_problem(kind, ident, version, sizes[version.digest])
            if problem is not None:
                problems.append(problem)
        moves = await records.list_channel_moves(kind, ident)
        checked["channel_moves"] += len(moves)
        seen_moves.update(move.move_id for move in moves)
        pointers = await records.get_channels(kind, ident)
        problems.extend(_channel_problems(kind, ident, moves, pointers, audited))

    for move_id, (_, seq) in audited.items():
        if move_id not in seen_moves:
            problems.append(
                _problem(
                    f"move:{move_id}",
                    "integrity_error",
                    f"channel move {move_id} (audit entry {seq}) is missing from the channel "
                    "history",
                    audit_seq=seq,
                )
            )
    counts, found = await check_signatures(records, everything, acts)
    checked.update(counts)
    problems.extend(found)
    return checked, problems


def _version_blob_problem(
    kind: DefinitionKind, ident: str, version: DefinitionVersion, size: int | StrongroomError | None
) -> VerifyProblem | None:
    """What is wrong with a version's definition blob, given its re-hashed ``size`` (None:
    missing; an error: it failed verification)."""
    subject = f"{kind.value}/{ident}@{version.version}"
    if not isinstance(size, int):
        blob = f"{subject}: its definition blob sha256:{version.digest}"
        return _problem(
            subject,
            "not_found" if size is None else size.code,
            f"{blob} is missing" if size is None else f"{blob} fails verification: {size.message}",
            sha256=version.digest,
        )
    if size != version.size_bytes:
        return _problem(
            subject,
            "integrity_error",
            f"{subject} records {version.size_bytes} bytes but its blob has {size}",
            sha256=version.digest,
        )
    return None


def _channel_problems(
    kind: DefinitionKind,
    ident: str,
    moves: Sequence[ChannelMove],
    pointers: Mapping[Channel, ChannelMove],
    audited: Mapping[str, tuple[str, int]],
) -> list[VerifyProblem]:
    """Each move against its audit entry and the channel it moved, and each channel pointer
    against the last move of its history."""
    problems: list[VerifyProblem] = []
    heads: dict[str, str] = {}
    last: dict[str, str] = {}  # channel -> the move that set it last, by the history
    for move in moves:
        problems.extend(_check_move(move, audited, heads))
        heads[move.channel.value] = move.to_digest
        last[move.channel.value] = move.move_id
    pointed = {c.value: m.move_id for c, m in pointers.items()}
    for channel in sorted(set(last) | set(pointed)):
        if pointed.get(channel) != last.get(channel):
            problems.append(
                _problem(
                    f"{kind.value}/{ident}#{channel}",
                    "integrity_error",
                    f"channel {channel} of {kind.value} {ident} points at move "
                    f"{pointed.get(channel) or 'nothing'}, but its history ends with "
                    f"{last.get(channel) or 'nothing'}: the pointer was edited",
                    expected=last.get(channel),
                    found=pointed.get(channel),
                )
            )
    return problems


def collect_move(audited: dict[str, tuple[str, int]], row: ChainRow[AuditEntry]) -> None:
    """Note in ``audited`` (move_id -> (move_digest, row key)) the channel move that the
    audit ``row`` records, if it records one."""
    entry = row.entry
    if entry is not None and entry.event in MOVE_EVENTS:
        move = entry.details.get("move")
        digest = entry.details.get("move_digest")
        if isinstance(move, dict) and isinstance(digest, str):
            audited[str(move.get("move_id"))] = (digest, row.key)


def collect_act(acts: AuditActs, row: ChainRow[AuditEntry]) -> None:
    """Note in ``acts`` (row key -> (subject id, signed act)) the signed act that the audit
    ``row`` carries in its details (``signed_act``), if it carries one."""
    entry = row.entry
    if entry is not None and "signed_act" in entry.details:
        acts[row.key] = (entry.subject_id, entry.details["signed_act"])


async def _blob_sizes(
    blobs: BlobStore, versions: list[DefinitionVersion], verified: Mapping[str, int] | None
) -> dict[str, int | StrongroomError | None]:
    """Each definition blob's verified size (what verify's blob stage found, else re-hashed
    here, all in one pass), the error that fails it, or None when it is missing."""
    sizes: dict[str, int | StrongroomError | None] = {}
    if verified is not None:
        sizes.update({v.digest: verified[v.digest] for v in versions if v.digest in verified})
    pending = sorted({v.digest for v in versions} - set(sizes))
    sizes.update(zip(pending, await rehash_blobs(blobs, pending), strict=True))
    return sizes


def _check_move(
    move: ChannelMove, audited: Mapping[str, tuple[str, int]], heads: Mapping[str, str]
) -> list[VerifyProblem]:
    subject = f"{move.kind.value}/{move.definition_id}#{move.channel.value}:{move.move_id}"
    out: list[VerifyProblem] = []
    record = audited.get(move.move_id)
    if record is None:
        out.append(
            _problem(
                subject,
                "integrity_error",
                f"channel move {move.move_id} of {move.kind.value} {move.definition_id} has "
                "no audit entry",
                move_id=move.move_id,
            )
        )
    elif record[0] != record_digest_as(move, record[0]):
        out.append(
            _problem(
                subject,
                "integrity_error",
                f"channel move {move.move_id} of {move.kind.value} {move.definition_id} "
                f"({move.channel.value}) no longer matches its audit entry {record[1]}",
                move_id=move.move_id,
                audit_seq=record[1],
            )
        )
    previous = heads.get(move.channel.value)
    if move.from_digest != previous:
        out.append(
            _problem(
                subject,
                "integrity_error",
                f"channel move {move.move_id} starts from "
                f"{move.from_digest or 'an unset channel'} but the channel held "
                f"{previous or 'nothing'}",
                move_id=move.move_id,
            )
        )
    return out
