"""The Control Room's ASGI application: `create_app` builds it over a vault URL pair (opened
read-only at start-up: never created, never bootstrapped) or over a `Vault` the caller
already holds (embedding: mount it in your own FastAPI app).

Nothing here changes the vault: every route is a GET (the login form's POST sets a cookie and
touches nothing else), and the vault is opened with ``create=False, bootstrap=False``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom.errors import ErrorInfo, NotFound, StrongroomError
from strongroom.vault import Vault
from strongroom.web import api, pages
from strongroom.web._errors import error_info, status_for
from strongroom.web._render import render_error, route_path
from strongroom.web._security import security_headers, token_guard

__all__ = ["ControlRoom", "create_app"]

API_VERSION = "1"


@dataclass
class ControlRoom:
    """What the routes share: the vault and how often live views poll."""

    vault: Vault
    poll_seconds: float = 2.0
    token_required: bool = False


def create_app(
    vault_url: str | None = None,
    *,
    blobs_url: str | None = None,
    vault: Vault | None = None,
    token: str | None = None,
    poll_seconds: float = 2.0,
) -> FastAPI:
    """The Control Room over ``vault`` (left open at shutdown: it is the caller's) or over the
    vault at ``vault_url`` (opened at start-up, closed at shutdown; a missing vault fails the
    start-up with `NotFound`). With ``token``, every request needs it (`token_guard`).

    To embed it in your own ASGI app, mount it over a vault your app opens (a mounted app
    gets no start-up event of its own): ``parent.mount("/strongroom", create_app(vault=v))``;
    links and the page scripts follow the mount point (``root_path``)."""
    if vault is None and vault_url is None:
        raise ValueError("create_app needs vault_url or vault")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if vault is not None:  # the caller's: open already, and closed by the caller
            yield
            return
        assert vault_url is not None
        opened = await Vault.open(vault_url, blobs_url=blobs_url, create=False, bootstrap=False)
        app.state.room = ControlRoom(opened, poll_seconds, token is not None)
        try:
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="strongroom Control Room",
        version=API_VERSION,
        summary="A read-only window on a strongroom vault: runs, artifacts, logs, registry, audit.",
        lifespan=lifespan,
        # No interactive docs page: FastAPI's loads script from a CDN, which the CSP forbids
        # and an offline machine cannot reach. The schema itself is served.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.token = token
    if vault is not None:
        # Set here, not in the lifespan: a Control Room mounted in another ASGI app
        # (``parent.mount("/strongroom", create_app(vault=vault))``) gets no lifespan events.
        app.state.room = ControlRoom(vault, poll_seconds, token is not None)
    app.middleware("http")(token_guard(token))
    app.middleware("http")(security_headers)
    static = resources.files("strongroom.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    _handlers(app)
    return app


def _answer(request: Request, info: ErrorInfo, status: int) -> Response:
    if route_path(request).startswith("/api/"):
        return JSONResponse({"error": info.model_dump(mode="json")}, status_code=status)
    return render_error(request, info, status)


def _handlers(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> Response:
        info = error_info(exc)
        return _answer(request, info, status_for(info.code))

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, Any]] = [
            {
                "path": ".".join(str(part) for part in error.get("loc", ())),
                "message": str(error.get("msg", ""))[:300],
            }
            for error in exc.errors()[:20]
        ]
        first = errors[0] if errors else {"path": "request", "message": "invalid"}
        info = ErrorInfo(
            code="validation_error",
            message=f"{first['path']}: {first['message']}",
            details={"errors": errors},
        )
        return _answer(request, info, 422)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            info = NotFound(f"no such page: {route_path(request)[:200]}").to_info()
        else:
            info = ErrorInfo(code="http_error", message=str(exc.detail)[:300], details={})
        return _answer(request, info, exc.status_code)

    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Expected errors are answered inside the middleware stack (so they get the security
    # headers); anything else is a bug: Starlette's outermost handler answers it (as an
    # ``internal`` error, scrubbed) and logs it.
    app.add_exception_handler(StrongroomError, on_error)
    app.add_exception_handler(pydantic.ValidationError, on_error)
    app.add_exception_handler(Exception, on_error)
