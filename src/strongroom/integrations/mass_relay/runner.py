"""Mass Relay's PythonRunnerRequest through strongroom's governed execution lane, and the
PythonRunnerResponse it gets back.

`ToolRunner` takes the request's fields natively (a ``governance`` object, trace ids that are
not hex, ``requested_at`` and ``timeout_seconds`` recorded in the audit). What it cannot take
as it is: a ``run_id`` that names no run of the vault (Mass Relay's own run ids, which are not
always valid ULIDs). Such a request runs on a new run of project ``tools`` and the caller's
run id is kept as ``external_run_id`` (audited, and echoed as ``run_id`` in the Mass Relay
response, which is what the caller correlates on).
"""

from __future__ import annotations

from typing import Any

from strongroom.errors import NotFound
from strongroom.execution import ToolRunner
from strongroom.ids import check_entity_id
from strongroom.integrations.mass_relay.contracts import PythonRunnerRequest, PythonRunnerResponse
from strongroom.integrations.mass_relay.persistence import timestamp
from strongroom.models import RunnerResponse
from strongroom.models.execution import RunnerRequest
from strongroom.services import parse

__all__ = ["python_runner_request", "python_runner_response", "run_request", "runner_request"]

_OPERATION = "mass_relay.runner"


def python_runner_request(data: Any) -> PythonRunnerRequest:
    """A Mass Relay runner request, every field kept (`ValidationError` otherwise)."""
    return parse(PythonRunnerRequest, data, operation=_OPERATION)


def _is_entity_id(value: str) -> bool:
    try:
        check_entity_id(value)
    except ValueError:
        return False
    return True


def runner_request(doc: PythonRunnerRequest, *, run_exists: bool) -> RunnerRequest:
    """The `RunnerRequest` for a Mass Relay request: its fields as they are, except the
    ``run_id`` when it names no run of the vault (``run_exists`` False), which becomes
    ``external_run_id``."""
    data = doc.document()
    for key in ("run_id", "caller", "requested_at", "tool_version"):
        if data.get(key) is None:
            data.pop(key, None)
    unknown = {k: data.pop(k) for k in list(data) if k not in RunnerRequest.model_fields}
    del unknown  # kept by the document; the runner has no use for them
    run_id = data.pop("run_id", None)
    if run_id is not None:
        if run_exists and _is_entity_id(run_id):
            data["run_id"] = run_id
        else:
            data["external_run_id"] = run_id
    timeout = data.get("timeout_seconds")
    if isinstance(timeout, float):
        data["timeout_seconds"] = max(1, int(timeout)) if timeout.is_integer() else int(timeout) + 1
    return parse(RunnerRequest, data, operation=_OPERATION)


def python_runner_response(
    response: RunnerResponse, request: PythonRunnerRequest | None = None
) -> PythonRunnerResponse:
    """A `RunnerResponse` in Mass Relay's shape: ``request_id``, ``run_id`` (the request's
    own when it gave one, else strongroom's), ``tool_id``, ``tool_version``, ``status``,
    ``started_at``, ``finished_at``, ``output``, ``error`` (on failure) and ``trace`` (the
    request's, as it was)."""
    data: dict[str, Any] = {
        "request_id": request.request_id if request is not None else response.request_id,
        "run_id": (request.run_id if request is not None and request.run_id else None)
        or response.run_id,
        "tool_id": request.tool_id if request is not None else response.tool_id,
        "tool_version": (request.tool_version if request is not None else None)
        or response.tool_version,
        "status": response.status.value,
        "started_at": timestamp(response.started_at),
        "finished_at": timestamp(response.finished_at),
        "output": response.output,
    }
    if response.error is not None:
        data["error"] = response.error.model_dump(mode="json", exclude_none=True)
    if request is not None and request.trace is not None:
        data["trace"] = request.trace.document()
    elif response.trace is not None:
        data["trace"] = response.trace.model_dump(mode="json")
    return parse(PythonRunnerResponse, data, operation=_OPERATION)


async def run_request(
    runner: ToolRunner, data: Any, **options: Any
) -> tuple[RunnerResponse, PythonRunnerResponse]:
    """Run a Mass Relay runner request (a mapping or a `PythonRunnerRequest`) through
    ``runner``: strongroom's response and the Mass Relay one. ``options`` go to
    `ToolRunner.run` (``allow_degraded``, ``cancel``...)."""
    doc = data if isinstance(data, PythonRunnerRequest) else python_runner_request(data)
    exists = False
    if doc.run_id is not None and _is_entity_id(doc.run_id):
        try:
            await runner.vault.runs.get(doc.run_id)
            exists = True
        except NotFound:
            exists = False
    response = await runner.run(runner_request(doc, run_exists=exists), **options)
    return response, python_runner_response(response, doc)
