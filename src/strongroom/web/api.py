"""``/api/v1``: the JSON API behind every page, read-only. Records come back as the models the
CLI's ``--json`` prints (`Run`, `RunPage`, `ArtifactMetadata`, `LogEntry`...); errors as
``{"error": {"code", "message", "details"}}`` (`ErrorBody`) with the status of their family
(422 bad input, 404 missing, 409 integrity, 401 without the token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter

from strongroom.models import (
    RUN_STATS_MAX_DAYS,
    ArtifactMetadata,
    AuditPage,
    AuditQuery,
    LogEntry,
    LogQuery,
    MerkleCheckpoint,
    Run,
    RunPage,
    RunSnapshot,
    RunStats,
    RunStatusCounts,
    SnapshotRecord,
    VerifyRecord,
)
from strongroom.models.registry import Approval, DefinitionKind, DefinitionVersion
from strongroom.services import parse
from strongroom.services.registry import DefinitionSummary, RegistryHistory
from strongroom.vault import Vault
from strongroom.web import _content, _views
from strongroom.web._errors import ErrorBody
from strongroom.web.models import (
    Comparison,
    HostReport,
    Preview,
    RunSteps,
    SnapshotDiff,
)

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "The Control Room's token is missing or wrong."},
    404: {"model": ErrorBody, "description": "No such record."},
    409: {"model": ErrorBody, "description": "Stored bytes no longer match their digest."},
    422: {"model": ErrorBody, "description": "A parameter is malformed or out of range."},
}

router = APIRouter(prefix="/api/v1", tags=["api"], responses=_ERRORS)

RunId = Annotated[str, Path(max_length=64, description="A run id.")]
ArtifactId = Annotated[str, Path(max_length=64, description="An artifact id.")]
Limit = Annotated[int, Query(ge=1, le=1000)]


def vault_of(request: Request) -> Vault:
    vault: Vault = request.app.state.room.vault
    return vault


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _json_list(kind: Any, items: list[Any]) -> Response:
    return Response(TypeAdapter(list[kind]).dump_json(items), media_type="application/json")


# -- runs ---------------------------------------------------------------------------------


StatusQ = Annotated[
    list[str] | None, Query(description="pending, running, completed, failed, cancelled")
]
TextQ = Annotated[str | None, Query(max_length=200)]
LabelQ = Annotated[list[str] | None, Query(description="KEY=VALUE; repeat for several.")]
WhereQ = Annotated[
    list[str] | None, Query(description="'metrics.KEY OP NUMBER'; repeat for several.")
]
SortQ = Annotated[str, Query(max_length=200, description="created_at, updated_at, metrics.KEY")]
CursorQ = Annotated[str | None, Query(max_length=512)]
PreviousQ = Annotated[
    str | None, Query(max_length=64, description="Runs whose previous run is this one.")
]


def run_filters(
    project: TextQ = None,
    playbook: TextQ = None,
    actor: TextQ = None,
    previous: PreviousQ = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: TextQ = None,
    label: LabelQ = None,
    where: WhereQ = None,
) -> dict[str, Any]:
    """The run index's filters (``strongroom runs list``'s options, by the same names)."""
    return {
        "project": project,
        "playbook": playbook,
        "actor": actor,
        "previous": previous,
        "since": since,
        "until": until,
        "search": search,
        "label": label or (),
        "where": where or (),
    }


Filters = Annotated[dict[str, Any], Depends(run_filters)]


@router.get("/runs", response_model=RunPage, summary="The run index, filtered and paged")
async def list_runs(
    request: Request,
    filters: Filters,
    status: StatusQ = None,
    sort: SortQ = "created_at",
    asc: bool = False,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Response:
    query = _views.run_query(
        **filters, status=status or (), sort=sort, asc=asc, limit=limit, cursor=cursor
    )
    return _json(await vault_of(request).runs.list(query))


@router.get("/runs/counts", response_model=RunStatusCounts, summary="Matching runs per status")
async def run_counts(request: Request, filters: Filters) -> Response:
    query = _views.run_query(**filters, limit=1)
    return _json(await _views.status_counts(vault_of(request), query))


@router.get("/runs/{run_id}", response_model=Run, summary="One run")
async def get_run(request: Request, run_id: RunId) -> Response:
    return _json(await vault_of(request).runs.get(run_id))


@router.get(
    "/runs/{run_id}/steps",
    response_model=RunSteps,
    summary="A run's steps, and the workers that ran their attempts",
)
async def get_steps(request: Request, run_id: RunId) -> Response:
    return _json(await _views.run_steps(vault_of(request), run_id))


@router.get(
    "/runs/{run_id}/snapshots",
    response_model=list[SnapshotRecord],
    summary="A run's snapshot revisions",
)
async def list_snapshots(request: Request, run_id: RunId) -> Response:
    vault = vault_of(request)
    await vault.runs.get(run_id)
    return _json_list(SnapshotRecord, await vault.snapshots.history(run_id))


@router.get(
    "/runs/{run_id}/snapshots/diff", response_model=SnapshotDiff, summary="Diff two revisions"
)
async def diff_snapshots(
    request: Request,
    run_id: RunId,
    a: Annotated[int, Query(ge=1, le=2**62)],
    b: Annotated[int, Query(ge=1, le=2**62)],
) -> Response:
    return _json(await _views.snapshot_diff(vault_of(request), run_id, a, b))


@router.get(
    "/runs/{run_id}/snapshots/{revision}", response_model=RunSnapshot, summary="One revision"
)
async def get_snapshot(
    request: Request, run_id: RunId, revision: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    return _json(await vault_of(request).snapshots.load(run_id, revision))


@router.get(
    "/runs/{run_id}/artifacts",
    response_model=list[ArtifactMetadata],
    summary="A run's artifacts",
)
async def list_artifacts(request: Request, run_id: RunId) -> Response:
    vault = vault_of(request)
    await vault.runs.get(run_id)
    found = await vault.artifacts.list({"run_id": run_id, "limit": 1000})
    return _json_list(ArtifactMetadata, found)


@router.get("/runs/{run_id}/logs", response_model=list[LogEntry], summary="A run's log")
async def read_logs(
    request: Request,
    run_id: RunId,
    level: Annotated[str | None, Query(description="The lowest level shown.")] = None,
    event: Annotated[str | None, Query(max_length=128)] = None,
    phase: Annotated[str | None, Query(max_length=128)] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Limit = 200,
) -> Response:
    vault = vault_of(request)
    query = parse(
        LogQuery,
        {
            "min_level": level or None,
            "event": event or None,
            "phase": phase or None,
            "after_seq": after_seq,
            "limit": limit,
        },
        operation="web.logs",
    )
    await vault.runs.get(run_id)
    return _json_list(LogEntry, await vault.logs.read(run_id, query))


@router.get("/compare", response_model=Comparison, summary="Runs side by side")
async def compare(
    request: Request,
    run: Annotated[list[str], Query(description="A run id; give 2 to 8.")],
) -> Response:
    return _json(await _views.compare_runs(vault_of(request), run))


# -- artifacts ------------------------------------------------------------------------------


@router.get("/artifacts/{artifact_id}", response_model=ArtifactMetadata, summary="An artifact")
async def get_artifact(request: Request, artifact_id: ArtifactId) -> Response:
    return _json(await vault_of(request).artifacts.get(artifact_id))


@router.get(
    "/artifacts/{artifact_id}/preview", response_model=Preview, summary="The first rows or text"
)
async def preview_artifact(request: Request, artifact_id: ArtifactId) -> Response:
    return _json(await _content.preview(vault_of(request), artifact_id))


@router.get(
    "/artifacts/{artifact_id}/content",
    summary="The content, verified on the way",
    response_class=Response,
    responses={
        200: {
            "content": {
                media: {"schema": {"type": "string"}}
                for media in ["application/octet-stream", *sorted(_content.INLINE_IMAGE_TYPES)]
            },
            "description": "The artifact's bytes: an attachment (application/octet-stream), "
            "or with ``inline`` a raster image as its own type.",
        }
    },
)
async def artifact_content(
    request: Request,
    artifact_id: ArtifactId,
    inline: Annotated[bool, Query(description="Inline, for raster images only.")] = False,
) -> Response:
    return await _content.download(vault_of(request), artifact_id, inline=inline)


# -- registry -------------------------------------------------------------------------------


@router.get("/registry", response_model=list[DefinitionSummary], summary="Definitions, by kind")
async def registry_list(request: Request, kind: DefinitionKind | None = None) -> Response:
    return _json_list(DefinitionSummary, await vault_of(request).registry.list(kind))


@router.get("/registry/approvals", response_model=list[Approval], summary="Every approval")
async def registry_approvals(request: Request) -> Response:
    return _json_list(Approval, await vault_of(request).registry.approvals())


DefinitionId = Annotated[str, Path(max_length=128)]


@router.get(
    "/registry/{kind}/{definition_id}",
    response_model=RegistryHistory,
    summary="A definition's versions and channel history",
)
async def registry_history(
    request: Request, kind: DefinitionKind, definition_id: DefinitionId
) -> Response:
    return _json(await vault_of(request).registry.history(kind, definition_id))


class DefinitionDiff(BaseModel):
    a: str
    b: str
    diff: str


@router.get(
    "/registry/{kind}/{definition_id}/diff",
    response_model=DefinitionDiff,
    summary="Diff two versions of a definition",
)
async def registry_diff(
    request: Request,
    kind: DefinitionKind,
    definition_id: DefinitionId,
    a: Annotated[str, Query(max_length=200, description="A version, channel or digest.")],
    b: Annotated[str, Query(max_length=200, description="A version, channel or digest.")],
) -> Response:
    text = await vault_of(request).registry.diff((kind, definition_id, a), (kind, definition_id, b))
    return _json(DefinitionDiff(a=a, b=b, diff=text))


class PublishedVersion(BaseModel):
    """One version of a definition: its registry record and the definition as published."""

    version: DefinitionVersion
    definition: dict[str, Any] = Field(
        description="The definition (a tool manifest, playbook, project config or sandbox "
        "policy, by the version's kind)."
    )


@router.get(
    "/registry/{kind}/{definition_id}/{selector}",
    response_model=PublishedVersion,
    summary="One version of a definition, as published",
)
async def registry_version(
    request: Request,
    kind: DefinitionKind,
    definition_id: DefinitionId,
    selector: Annotated[str, Path(max_length=200, description="Version, channel or digest.")],
) -> Response:
    version, definition = await vault_of(request).registry.get(kind, definition_id, selector)
    return _json(PublishedVersion(version=version, definition=definition.model_dump(mode="json")))


# -- audit ----------------------------------------------------------------------------------


@router.get("/audit", response_model=AuditPage, summary="Audit entries, newest first")
async def audit_entries(
    request: Request,
    event: Annotated[
        str | None, Query(max_length=128, description="An event name, or a prefix ending in '.'")
    ] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    run: Annotated[str | None, Query(max_length=64, description="Entries about this run.")] = None,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    after_seq: Annotated[
        int | None, Query(ge=0, le=2**62, description="Oldest first, after this entry.")
    ] = None,
    limit: Limit = 50,
) -> Response:
    query = parse(
        AuditQuery,
        {
            "event": event or None,
            "actor": actor or None,
            "run_id": run or None,
            "before_seq": before_seq,
            "after_seq": after_seq,
            "limit": limit,
        },
        operation="web.audit",
    )
    return _json(await vault_of(request).audit.query(query))


class LastVerify(BaseModel):
    """The newest recorded verify (``strongroom verify`` records one), or null."""

    last: VerifyRecord | None


@router.get("/audit/verify", response_model=LastVerify, summary="The last recorded verify")
async def last_verify(request: Request) -> Response:
    return _json(LastVerify(last=await vault_of(request).audit.last_verify()))


@router.get(
    "/audit/checkpoints", response_model=list[MerkleCheckpoint], summary="Merkle checkpoints"
)
async def audit_checkpoints(request: Request) -> Response:
    return _json_list(MerkleCheckpoint, await vault_of(request).audit.checkpoints())


# -- overview -----------------------------------------------------------------------------


@router.get(
    "/overview",
    response_model=RunStats,
    summary="Runs per day by status, durations per playbook, failures per step",
)
async def overview(
    request: Request,
    days: Annotated[int, Query(ge=1, le=RUN_STATS_MAX_DAYS)] = 30,
    project: TextQ = None,
    playbook: TextQ = None,
) -> Response:
    vault = vault_of(request)
    return _json(await _views.overview(vault, days=days, project=project, playbook=playbook))


# -- host -----------------------------------------------------------------------------------


@router.get("/host", response_model=HostReport, summary="The sandbox layers this host enforces")
async def host() -> Response:
    return _json(await _views.host_report())
