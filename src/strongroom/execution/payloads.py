"""Checking payloads against a tool's contract, storing them as artifacts, and turning the
captured stdout/stderr into the run's log lines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from strongroom.errors import SchemaValidationFailed
from strongroom.models import ArtifactRole
from strongroom.sandbox.launch import LaunchResult
from strongroom.secrets import Redactor

if TYPE_CHECKING:
    from strongroom.execution.runner import _Invocation
    from strongroom.vault import Vault

__all__ = ["encode_payload", "schema_problem", "store_payloads", "tool_log_lines"]

MAX_LOG_LINES = 10_000
MAX_LINE_CHARS = 65_536


def schema_problem(schema: Any, data: Any, where: str) -> SchemaValidationFailed | None:
    """The first (most relevant) mismatch of ``data`` against ``schema``, as an error whose
    ``details.path`` is a JSON path (``$.records[0].id``)."""
    validator_cls = validator_for(schema, default=Draft202012Validator)
    error = best_match(validator_cls(schema).iter_errors(data))
    if error is None:
        return None
    return SchemaValidationFailed(
        f"the tool's {where} does not match its {'request' if where == 'input' else 'response'}"
        f" schema at {error.json_path}: {error.message}",
        operation="runner.validate",
        where=where,
        path=error.json_path,
        validator=str(error.validator),
    )


def encode_payload(value: Any) -> bytes:
    """The bytes a tool's input or output is stored as; the audit's input/output digests are
    the sha256 of these same bytes, so they name the artifacts."""
    return json.dumps(value, ensure_ascii=False).encode()


async def store_payloads(
    vault: Vault, inv: _Invocation, output: bytes
) -> tuple[list[str], str | None]:
    """The output as a JSON artifact of the run, with the invocation's role and step (A1:
    tagged ``needs-review``; not stored when the caller said so, except A3); A3 also keeps
    the input. Returns the artifact ids (the output's last) and the output's sha256."""
    common = {
        "tool_id": inv.tool.tool_id,
        "tool_version": inv.tool.version,
        "request_id": inv.request.request_id,
        "governance": inv.governance.level.value,
    }
    ids: list[str] = []
    if inv.governance.stores_payloads:
        stored = await vault.artifacts.put_bytes(
            inv.run_id,
            inv.input_payload,
            role=ArtifactRole.CUSTOM,
            step=inv.step,
            name=f"{inv.tool.tool_id}.input.json",
            format="json",
            metadata={**common, "payload": "input"},
        )
        ids.append(stored.artifact_id)
    review = inv.governance.needs_review
    if not inv.store_output and not inv.governance.stores_payloads:
        return ids, None
    stored = await vault.artifacts.put_bytes(
        inv.run_id,
        output,
        role=inv.output_role,
        step=inv.step,
        name=f"{inv.tool.tool_id}.output.json",
        format="json",
        metadata={**common, "payload": "output", "review": "pending" if review else "none"},
        tags=["needs-review"] if review else [],
    )
    ids.append(stored.artifact_id)
    return ids, stored.sha256


def tool_log_lines(
    result: LaunchResult, redactor: Redactor, tool_id: str, request_id: str, attempt: int
) -> list[dict[str, Any]]:
    """stdout (info) and stderr (warning) lines, redacted, at most `MAX_LOG_LINES`."""
    data = {"tool_id": tool_id, "request_id": request_id, "attempt": attempt}
    lines: list[dict[str, Any]] = []
    for stream, level, raw in (
        ("stdout", "info", result.stdout),
        ("stderr", "warning", result.stderr),
    ):
        for text in raw.decode("utf-8", "replace").splitlines():
            if len(lines) >= MAX_LOG_LINES:
                break
            lines.append(
                {
                    "level": level,
                    "event": f"tool.{stream}",
                    "message": redactor.text(text[:MAX_LINE_CHARS]),
                    "data": data,
                }
            )
    if result.output_truncated or len(lines) >= MAX_LOG_LINES:
        lines.append(
            {
                "level": "warning",
                "event": "tool.output_truncated",
                "message": "the tool wrote more than the runner keeps; the rest was dropped",
                "data": data,
            }
        )
    return lines
