"""The execution lane's reference tools (contracts.md). They run inside the sandbox like any
tool; what needs the vault they ask of the runner through ``host`` (see
`strongroom.execution.host_services`), which performs and audits it.

This module is imported inside the sandbox: keep it free of heavy imports.
"""

from __future__ import annotations

from typing import Any, Protocol


class Host(Protocol):
    def call(self, op: str, **params: Any) -> Any: ...


def fetch_object_storage(request: dict[str, Any], host: Host) -> dict[str, Any]:
    """``{bucket, key}`` -> the object of catalog namespace ``bucket`` at path ``key``,
    stored as an artifact of the run: ``{uri, content_type, size_bytes, sha256,
    artifact_id}``."""
    result = host.call("fetch_object", bucket=request["bucket"], key=request["key"])
    return {
        "uri": result["uri"],
        "content_type": result["content_type"],
        "size_bytes": result["size_bytes"],
        "sha256": result["sha256"],
        "artifact_id": result["artifact_id"],
    }


def record_run_summary(request: dict[str, Any], host: Host) -> dict[str, Any]:
    """``{summary}`` -> recorded on the run record: ``{recorded, summary}``, the summary
    echoed as given (the contract's object; version 1.0.0 of the tool took a string, which
    is still accepted)."""
    summary = request["summary"]
    result = host.call("record_summary", summary=summary)
    return {"recorded": bool(result["recorded"]), "summary": summary}
