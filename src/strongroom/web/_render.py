"""Server-side rendering: one Jinja2 environment over the packaged templates, autoescaping
every value (a stored purpose, log line, artifact name or label is text, never markup), and
the filters the templates share (times, durations, sizes, short digests, safe URLs)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from strongroom.errors import ErrorInfo
from strongroom.secrets import safe_url

__all__ = ["environment", "query_url", "render", "render_error", "root_of", "route_path"]


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def _short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:n]


def query_url(path: str, params: Mapping[str, Any]) -> str:
    """``path`` with ``params`` as its query (lists repeat the key; None and "" are left out):
    how every view's filters live in its URL."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(key, str(v)) for v in values if v is not None and v != ""]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def root_of(request: Request) -> str:
    """The prefix the Control Room is served under (a mount point or ``--root-path``)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def route_path(request: Request) -> str:
    """The request's path below that prefix: what the routes match."""
    path = request.url.path
    root = root_of(request)
    return path[len(root) :] or "/" if root and path.startswith(root) else path


environment = Environment(
    loader=PackageLoader("strongroom.web", "templates"),
    autoescape=select_autoescape(("html", "svg"), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    when=_when, duration=_duration, size=_size, short=_short, safe_url=safe_url
)
environment.globals.update(query_url=query_url)


def render(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """``template`` rendered with ``context`` (plus the request and the vault's safe URL)."""
    room = getattr(request.app.state, "room", None)
    html = environment.get_template(template).render(
        request=request,
        vault_url=safe_url(room.vault.url) if room is not None else "",
        token_required=bool(room and room.token_required),
        root=root_of(request),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def render_error(request: Request, info: ErrorInfo, status: int) -> HTMLResponse:
    """The error page: the same code, message and details the API would answer."""
    return render(request, "error.html", {"error": info, "status": status}, status=status)
