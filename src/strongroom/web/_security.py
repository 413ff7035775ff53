"""What keeps the Control Room read-only and safe to open: the token check (a bearer header,
or the cookie the login form sets), the response headers every answer carries (a strict CSP
with no inline script, ``nosniff``, no framing, no referrer), and the rule that only loopback
binds may go without a token (`check_bind`)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from strongroom.errors import ValidationError

__all__ = [
    "COOKIE_NAME",
    "CSP",
    "TOKEN_ENV",
    "check_bind",
    "cookie_value",
    "local_path",
    "security_headers",
    "token_guard",
]

TOKEN_ENV = "STRONGROOM_SERVE_TOKEN"
COOKIE_NAME = "strongroom_session"
MIN_TOKEN_LENGTH = 16

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""No inline script or style anywhere: every script and stylesheet is a file under /static,
and the SVG charts colour themselves through CSS classes, not style attributes."""

_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}

Handler = Callable[[Request], Awaitable[Response]]


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind other than loopback without a token, and a token too short to hold."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValidationError(
            f"the token must be at least {MIN_TOKEN_LENGTH} characters",
            operation="serve",
            reason="weak_token",
        )
    if token is None and not _loopback(host):
        raise ValidationError(
            f"binding {host!r} opens the Control Room to other machines: give a token "
            f"(--token or ${TOKEN_ENV}), or bind 127.0.0.1",
            operation="serve",
            reason="token_required",
            host=host,
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_value(token: str) -> str:
    """What the session cookie holds: a MAC of the token, never the token itself."""
    return hmac.new(token.encode(), b"strongroom control room session", hashlib.sha256).hexdigest()


def local_path(target: str | None) -> str:
    """A redirect target that stays on this server: a path, never ``//host`` or a scheme."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return "/"
    return target


def _authorised(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and given:
        return hmac.compare_digest(given.strip().encode(), token.encode())
    cookie = request.cookies.get(COOKIE_NAME)
    return cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def token_guard(token: str | None) -> Callable[[Request, Handler], Awaitable[Response]]:
    """Middleware: without the token, the API answers 401 and a page redirects to /login."""

    async def guard(request: Request, call_next: Handler) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        path = request.url.path
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if token is None or path.startswith("/static/") or path in ("/login", "/favicon.ico"):
            return await call_next(request)
        if _authorised(request, token):
            return await call_next(request)
        if path.startswith("/api/"):
            return JSONResponse(
                {
                    "error": {
                        "code": "unauthorized",
                        "message": "this Control Room needs its token: send "
                        "'Authorization: Bearer <token>'",
                        "details": {},
                    }
                },
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{root}/login?next={quote(target, safe='')}", status_code=303)

    return guard


async def security_headers(request: Request, call_next: Handler) -> Response:
    """Middleware: the headers of `_HEADERS` on every response; nothing but static files is
    cached."""
    response = await call_next(request)
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    if "/static/" not in request.url.path:
        response.headers.setdefault("cache-control", "no-store")
    return response
