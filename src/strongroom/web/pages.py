"""The Control Room's pages: server-rendered HTML over the same views as the API. Every view's
state (filters, page, revisions compared, runs compared) is in its URL, so a link can be
shared; live parts (run status, the log tail) are refreshed by /static/app.js from the API."""

from __future__ import annotations

import hmac
import shlex
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from strongroom.errors import ValidationError
from strongroom.models import RUN_STATS_MAX_DAYS, AuditQuery, LogQuery, RunStatus
from strongroom.models.registry import DefinitionKind
from strongroom.secrets import REDACTED, safe_url
from strongroom.services import parse
from strongroom.vault import DEFAULT_VAULT_URL, Vault
from strongroom.web import _content, _layout, _views
from strongroom.web._render import query_url, render, root_of
from strongroom.web._security import COOKIE_NAME, cookie_value, local_path

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

RunId = Annotated[str, Path(max_length=64)]
SHOWN_REVISIONS = 50
"""A run page lists its newest snapshot revisions (the diff page takes any two)."""
SHOWN_ARTIFACTS = 100
"""A run page lists its first artifacts (the API lists them all)."""
SHOWN_WORKERS = 500
"""A run page lists its first step claims (the API lists up to `MAX_STEP_WORKERS`)."""
TextQ = Annotated[str | None, Query(max_length=200)]


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.room.vault
    return vault


def _cli(*words: str, request: Request) -> str:
    """A strongroom command to paste, against this vault: with ``--vault`` unless it is the
    default, or its URL held a secret (the vault's URL is kept redacted, and a redacted URL
    would not run: the environment that named the vault names it again)."""
    url = _vault(request).url
    extra = ["--vault", url] if url != DEFAULT_VAULT_URL and REDACTED not in url else []
    return shlex.join(["strongroom", *words, *extra])


@router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse(f"{root_of(request)}/runs", status_code=307)


@router.get("/runs")
async def runs_page(
    request: Request,
    status: Annotated[list[str] | None, Query()] = None,
    project: TextQ = None,
    playbook: TextQ = None,
    actor: TextQ = None,
    previous: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    search: TextQ = None,
    label: Annotated[list[str] | None, Query()] = None,
    where: Annotated[list[str] | None, Query()] = None,
    sort: Annotated[str | None, Query(max_length=200)] = None,
    asc: Annotated[str | None, Query(max_length=10)] = None,
    limit: Annotated[str | None, Query(max_length=10)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    vault = _vault(request)
    # A form sends its empty boxes too: empty is the default, as for every other filter.
    sort = sort or "created_at"
    ascending = (asc or "").lower() in ("1", "true", "yes", "on")
    per_page = _whole(limit, "limit", default=50)
    filters: dict[str, Any] = {
        "status": [s for s in status or [] if s],
        "project": project or "",
        "playbook": playbook or "",
        "actor": actor or "",
        "previous": previous or "",
        "since": since or "",
        "until": until or "",
        "search": search or "",
        "label": [v for v in label or [] if v],
        "where": [v for v in where or [] if v],
        "sort": sort if sort != "created_at" else "",
        "asc": "1" if ascending else "",
        "limit": per_page if per_page != 50 else "",
    }
    query = _views.run_query(
        status=filters["status"],
        project=project,
        playbook=playbook,
        actor=actor,
        previous=previous,
        since=_date(since, "since"),
        until=_date(until, "until", end_of_day=True),
        search=search,
        label=filters["label"],
        where=filters["where"],
        sort=sort,
        asc=ascending,
        limit=per_page,
        cursor=cursor,
    )
    # The page counts only past its own rows (cheap whatever the filters); the totals (per
    # status and overall, up to 10,000) come from /api/v1/runs/counts after the page is shown
    # (app.js), so a filter that is slow to count never holds the page back.
    page = await vault.runs.list(query.model_copy(update={"count_limit": query.limit}))
    counts_url = query_url(
        "/api/v1/runs/counts",
        {
            "project": query.project,
            "playbook": query.playbook_id,
            "actor": query.actor,
            "previous": query.previous_run_id,
            "since": query.created_after.isoformat() if query.created_after else None,
            "until": query.created_before.isoformat() if query.created_before else None,
            "search": query.purpose_contains,
            "label": filters["label"],
            "where": filters["where"],
        },
    )
    next_url = (
        query_url("/runs", {**filters, "cursor": page.next_cursor}) if page.next_cursor else None
    )
    return render(
        request,
        "runs.html",
        {
            "page": page,
            "filters": filters,
            "counts_url": counts_url,
            "statuses": [s.value for s in RunStatus],
            "next_url": next_url,
            "first_url": query_url("/runs", filters) if cursor else None,
            "status_url": lambda s: query_url("/runs", {**filters, "status": [s]}),
            "duration": _views.run_duration,
        },
    )


def _whole(text: str | None, name: str, *, default: int) -> int:
    """A whole number from a form box (empty: ``default``); the model checks its range."""
    if not text or not text.strip():
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise ValidationError(
            f"{name}: {text[:20]!r} is not a whole number",
            operation="web.runs",
            field=name,
            reason="not_a_number",
        ) from None


def _date(text: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """A date or date-time from a filter box (a bare date as ``until`` includes that day)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"{name}: {text[:40]!r} is not an ISO-8601 date or date-time",
            operation="web.runs",
            field=name,
            reason="bad_timestamp",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end_of_day and len(text.strip()) == 10:
        moment += timedelta(days=1)
    return moment


@router.get("/overview")
async def overview_page(
    request: Request,
    days: Annotated[int, Query(ge=1, le=RUN_STATS_MAX_DAYS)] = 30,
    project: TextQ = None,
    playbook: TextQ = None,
) -> Response:
    stats = await _views.overview(_vault(request), days=days, project=project, playbook=playbook)
    rates = sorted(
        stats.step_failures, key=lambda f: (-(f.failed / f.runs), f.playbook_id or "", f.step or "")
    )
    return render(
        request,
        "overview.html",
        {
            "stats": stats,
            "chart": _layout.runs_per_day(stats),
            "rates": rates[:50],
            "filters": {"days": days, "project": project or "", "playbook": playbook or ""},
        },
    )


@router.get("/runs/{run_id}")
async def run_page(
    request: Request,
    run_id: RunId,
    level: Annotated[str | None, Query(max_length=20)] = None,
    event: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    vault = _vault(request)
    run = await vault.runs.get(run_id)
    steps = await _views.run_steps(vault, run_id)
    history = await vault.snapshots.history(run_id)
    artifacts = await vault.artifacts.list({"run_id": run_id, "limit": SHOWN_ARTIFACTS + 1})
    log_query = parse(
        LogQuery,
        {"min_level": level or None, "event": event or None, "limit": 500},
        operation="web.logs",
    )
    logs = await vault.logs.read(run_id, log_query)
    waiting = [s for s in steps.steps if s.status == "waiting_approval"]
    approve: list[str] = []
    for step in waiting:
        command = (step.error.details if step.error else {}).get("command")
        if isinstance(command, str) and command:
            approve.append(command)
    if waiting:
        approve.append(
            _cli("registry", "approve", "--run", run_id, "--reason", "...", "--sign",
                 request=request)
        )  # fmt: skip
        approve.append(_cli("resume", run_id, request=request))
    related: dict[str, str | None] = {
        "parent": run.parent_run_id,
        "previous": run.previous_run_id,
    }
    successors = await vault.runs.list(
        previous_run_id=run_id, descending=False, limit=10, count_limit=100
    )
    return render(
        request,
        "run.html",
        {
            "run": run,
            "steps": steps,
            "gantt": _layout.gantt(steps.steps),
            "dag": _layout.dag(steps.steps),
            "history": history[-SHOWN_REVISIONS:],
            "revisions": len(history),
            "artifacts": artifacts[:SHOWN_ARTIFACTS],
            "more_artifacts": len(artifacts) > SHOWN_ARTIFACTS,
            "workers": steps.workers[:SHOWN_WORKERS],
            "more_workers": len(steps.workers) > SHOWN_WORKERS or steps.workers_truncated,
            "logs": logs,
            "log_filters": {"level": level or "", "event": event or ""},
            "last_seq": logs[-1].seq if logs else 0,
            "approve": approve,
            "related": related,
            "successors": successors,
            "duration": _views.run_duration(run),
            "levels": ["debug", "info", "warning", "error", "critical"],
            "playbook_url": (
                f"/registry/playbook/{run.playbook.playbook_id}" if run.playbook else None
            ),
        },
    )


@router.get("/runs/{run_id}/diff")
async def snapshot_diff_page(
    request: Request,
    run_id: RunId,
    a: Annotated[int, Query(ge=1, le=2**62)],
    b: Annotated[int, Query(ge=1, le=2**62)],
) -> Response:
    vault = _vault(request)
    run = await vault.runs.get(run_id)
    diff = await _views.snapshot_diff(vault, run_id, a, b)
    history = await vault.snapshots.history(run_id)
    shown = [r for r in history if r.revision in (a, b)] + history[-SHOWN_REVISIONS:]
    shown = sorted({r.revision: r for r in shown}.values(), key=lambda r: r.revision)
    return render(request, "diff.html", {"run": run, "diff": diff, "history": shown})


@router.get("/artifacts/{artifact_id}")
async def artifact_page(
    request: Request, artifact_id: Annotated[str, Path(max_length=64)]
) -> Response:
    vault = _vault(request)
    meta = await vault.artifacts.get(artifact_id)
    shown = await _content.preview(vault, artifact_id)
    return render(
        request,
        "artifact.html",
        {"meta": meta, "preview": shown, "location": safe_url(meta.location.uri)},
    )


@router.get("/compare")
async def compare_page(
    request: Request, run: Annotated[list[str] | None, Query()] = None
) -> Response:
    comparison = await _views.compare_runs(_vault(request), run or [])
    return render(request, "compare.html", {"cmp": comparison})


@router.get("/registry")
async def registry_page(request: Request, kind: DefinitionKind | None = None) -> Response:
    vault = _vault(request)
    summaries = await vault.registry.list(kind)
    approvals = await vault.registry.approvals()
    return render(
        request,
        "registry.html",
        {
            "summaries": summaries,
            "kind": kind.value if kind else "",
            "kinds": [k.value for k in DefinitionKind],
            "approvals": approvals[-100:][::-1],
        },
    )


@router.get("/registry/{kind}/{definition_id}")
async def definition_page(
    request: Request,
    kind: DefinitionKind,
    definition_id: Annotated[str, Path(max_length=128)],
    a: Annotated[str | None, Query(max_length=200)] = None,
    b: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    vault = _vault(request)
    history = await vault.registry.history(kind, definition_id)
    diff: str | None = None
    if a and b:
        diff = await vault.registry.diff((kind, definition_id, a), (kind, definition_id, b))
    return render(
        request,
        "definition.html",
        {"history": history, "diff": diff, "a": a or "", "b": b or ""},
    )


@router.get("/audit")
async def audit_page(
    request: Request,
    event: Annotated[str | None, Query(max_length=128)] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    run: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    vault = _vault(request)
    filters = {"event": event or "", "actor": actor or "", "run": run or ""}
    cursor = _whole(before, "before", default=0) or None
    query = parse(
        AuditQuery,
        {
            "event": event or None,
            "actor": actor or None,
            "run_id": run or None,
            "before_seq": cursor,
            "limit": 100,
        },
        operation="web.audit",
    )
    page = await vault.audit.query(query)
    head = await vault.audit.head()
    checkpoints = await vault.audit.checkpoints()
    last_verify = await vault.audit.last_verify()
    return render(
        request,
        "audit.html",
        {
            "entries": page.entries,
            "head": head,
            "filters": filters,
            "checkpoints": checkpoints[-20:][::-1],
            "last_verify": last_verify,
            "older_url": query_url("/audit", {**filters, "before": page.next_cursor})
            if page.next_cursor
            else None,
            "newest_url": query_url("/audit", filters) if cursor else None,
        },
    )


@router.get("/host")
async def host_page(request: Request) -> Response:
    return render(request, "host.html", {"host": await _views.host_report()})


@router.get("/login")
async def login_page(
    request: Request, next: Annotated[str, Query(max_length=2000)] = "/"
) -> Response:
    return render(request, "login.html", {"next": local_path(next), "failed": False})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token typed into the form; right: a session cookie (a MAC of the token,
    HttpOnly, SameSite=Strict) and back to where the user was going."""
    room = request.app.state.room
    token: str | None = getattr(request.app.state, "token", None)
    body = (await request.body())[:8192].decode("utf-8", errors="replace")
    form = parse_qs(body, max_num_fields=10)
    given = (form.get("token") or [""])[0]
    target = local_path((form.get("next") or ["/"])[0])
    if target == "/":
        target = f"{root_of(request)}/"
    if token is None or not room.token_required:
        return RedirectResponse(target, status_code=303)
    if not hmac.compare_digest(given.encode(), token.encode()):
        return render(request, "login.html", {"next": target, "failed": True}, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        cookie_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
