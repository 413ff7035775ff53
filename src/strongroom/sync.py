"""`SyncVault`: the async `Vault` for code without an event loop (scripts, notebooks).

Typed by ``sync.pyi`` (generated from the async services by `strongroom._sync_stub`).
Derived mechanically: every coroutine method of every service runs on one private event
loop owned by the `SyncVault`, so ``vault.runs.create(...)`` returns a `Run`, not an
awaitable. Async iterators (``artifacts.iter_models``, ``logs.iter_entries``) become lists;
``artifacts.stream`` is not offered (use ``get_file`` or ``get_bytes``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from strongroom.vault import Vault

__all__ = ["SYNC_ASYNC_ONLY", "SYNC_SERVICES", "SyncVault"]

T = TypeVar("T")

SYNC_SERVICES: Final = (
    "runs",
    "snapshots",
    "transitions",
    "artifacts",
    "logs",
    "audit",
    "catalog",
    "registry",
    "identity",
    "retention",
)
"""The `Vault` services `SyncVault` wraps (sync.pyi types each; `strongroom._sync_stub`)."""

SYNC_ASYNC_ONLY: Final = frozenset({"stream"})
"""Service methods `SyncVault` does not offer (a byte stream needs the caller's loop)."""


class _SyncService:
    def __init__(self, runner: asyncio.Runner, service: object) -> None:
        self._runner = runner
        self._service = service

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._service, name)
        if name in SYNC_ASYNC_ONLY:
            raise AttributeError(f"{name} is async-only; use get_file or get_bytes")
        if inspect.iscoroutinefunction(target):
            return self._wrap(target)
        if inspect.isasyncgenfunction(target):
            return self._collect(target)
        return target

    def _wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(func(*args, **kwargs))

        call.__doc__ = func.__doc__
        return call

    def _collect(self, func: Callable[..., AsyncIterator[Any]]) -> Callable[..., list[Any]]:
        async def gather(*args: Any, **kwargs: Any) -> list[Any]:
            return [item async for item in func(*args, **kwargs)]

        return self._wrap(gather)


class SyncVault:
    """Blocking twin of `Vault`: ``with SyncVault.open(path) as vault: vault.runs.create(...)``."""

    runs: Any
    snapshots: Any
    transitions: Any
    artifacts: Any
    logs: Any
    audit: Any
    catalog: Any
    registry: Any
    identity: Any
    retention: Any

    def __init__(self, runner: asyncio.Runner, vault: Vault) -> None:
        self._runner = runner
        self.vault = vault
        for name in SYNC_SERVICES:
            setattr(self, name, _SyncService(runner, getattr(vault, name)))

    @classmethod
    def open(cls, url: str | Path | None = None, **options: Any) -> Self:
        runner = asyncio.Runner()
        try:
            vault = runner.run(Vault.open(url, **options))
        except BaseException:
            runner.close()
            raise
        return cls(runner, vault)

    def run_sync(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (a coroutine of this vault's async API: ``self.vault`` or
        something built on it) on this vault's event loop and return its result."""

        async def wait() -> T:
            return await awaitable

        return self._runner.run(wait())

    def verify(self, **kwargs: Any) -> Any:
        return self._runner.run(self.vault.verify(**kwargs))

    def close(self) -> None:
        try:
            self._runner.run(self.vault.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
