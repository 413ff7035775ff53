"""Every public service method answers a wrong argument with a structured error naming the
parameter: a value of the wrong type, a malformed id or reference, an unknown enum value, a
lone surrogate. Nothing else escapes (no AttributeError, no pydantic error, no enum
ValueError) — except Python's own error for a call with missing arguments, which a type
checker catches before it runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom import Vault
from strongroom.errors import StrongroomError
from strongroom.sync import SYNC_ASYNC_ONLY, SYNC_SERVICES

WRONG: tuple[object, ...] = (
    42,
    None,
    True,
    ["x"],
    {"k": object()},
    object(),
    "\udcff",
    "x" * 100_000,
    b"bytes",
)

# The log service's transaction plumbing (TransitionService hands it what LogService.prepare
# returned); not an entry point for callers.
PLUMBING = {("logs", "chain"), ("logs", "remember"), ("logs", "carried"), ("logs", "forget")}


def _public(service: object) -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for name in dir(service):
        member = getattr(service, name)
        if name.startswith("_") or name in SYNC_ASYNC_ONLY:
            continue
        if callable(member) and not inspect.isclass(member):
            found.append((name, member))
    return found


async def _call(method: Callable[..., Any], args: list[object]) -> None:
    result = method(*args)
    if inspect.isasyncgen(result):
        async for _ in result:
            break
    elif inspect.isawaitable(result):
        await result


async def test_wrong_arguments_are_structured_errors_at_every_door(tmp_path: Path) -> None:
    escaped: dict[str, str] = {}
    async with await Vault.open(tmp_path / "vault") as vault:
        run = await vault.runs.create(project="args")
        calls = 0
        for service_name in SYNC_SERVICES:
            for name, method in _public(getattr(vault, service_name)):
                if (service_name, name) in PLUMBING:
                    continue
                params = [
                    p
                    for p in inspect.signature(method).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    and p.default is p.empty
                ]
                for position in range(len(params)):
                    for wrong in WRONG:
                        args: list[object] = [run.run_id] * len(params)
                        args[position] = wrong
                        calls += 1
                        try:
                            await _call(method, args)
                        except StrongroomError:
                            pass
                        except TypeError as exc:
                            if "required keyword-only argument" not in str(exc):
                                key = f"{service_name}.{name}({params[position].name})"
                                escaped.setdefault(key, f"{wrong!r:.30}: {exc!r:.120}")
                        except Exception as exc:
                            key = f"{service_name}.{name}({params[position].name})"
                            escaped.setdefault(key, f"{wrong!r:.30}: {exc!r:.120}")
        assert calls > 500
    assert escaped == {}, "\n".join(f"{k}: {v}" for k, v in sorted(escaped.items()))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda v: v.runs.get(42), "run_id"),
        (lambda v: v.logs.read("01890000-0000-7000-8000-000000000000", 5), "query"),
        (lambda v: v.registry.get("tool_manifest", 42), "definition_id"),
        (lambda v: v.registry.get("nonsense", "x"), "kind"),
    ],
)
async def test_the_error_names_the_parameter(
    tmp_path: Path, call: Callable[[Vault], Any], field: str
) -> None:
    async with await Vault.open(tmp_path / "vault") as vault:
        with pytest.raises(StrongroomError) as caught:
            await call(vault)
    assert caught.value.code == "validation_error"
    assert caught.value.details.get("field") == field or field in caught.value.message
