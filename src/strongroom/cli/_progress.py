"""Progress bars on stderr for the long commands: `verify`, `export`, `import` (one Rich task
per stage of a service's ``(stage, done, total)`` progress callback, `StageProgress`) and
`artifacts put` / `artifacts get` (bytes copied, `ByteProgress`). Nothing is drawn with
``--json`` or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["ByteProgress", "StageProgress"]


class _Bars:
    """Draws its Rich `Progress` while used as a context manager."""

    progress: Progress

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, traceback)


class StageProgress(_Bars):
    """A ``(stage, done, total)`` callback drawing one bar per stage, labelled from ``labels``
    (the stage name itself when it has no label). A new stage completes the earlier ones, and
    so does `finish`. Nothing is drawn when ``hidden`` (``--json``) or stderr is no terminal.

    Use as a context manager around the work: ``with stages: ...; stages.finish()``.
    """

    def __init__(self, labels: Mapping[str, str], *, label_width: int, hidden: bool) -> None:
        stderr = Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"{{task.description:<{label_width}}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            disable=hidden or not stderr.is_terminal,
        )
        self._labels = labels
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        task = self._tasks.get(stage)
        if task is None:
            self.finish()  # a new stage starts: earlier ones are complete
            task = self.progress.add_task(self._labels.get(stage, stage), total=total)
            self._tasks[stage] = task
        self.progress.update(task, completed=done, total=total)

    def describe(self, stage: str, description: str) -> None:
        """Relabel a stage's bar; nothing happens before the stage has started."""
        task = self._tasks.get(stage)
        if task is not None:
            self.progress.update(task, description=description)

    def finish(self) -> None:
        """Mark every bar complete (at the count it reached)."""
        for task_id in self._tasks.values():
            task = self.progress.tasks[task_id]
            if task.total is None or task.completed < task.total:
                self.progress.update(task_id, total=task.completed)


class ByteProgress(_Bars):
    """A ``progress(bytes_so_far)`` callback drawing one bar of bytes copied (size, speed and
    time left when ``total`` is known; a pulsing bar when not, e.g. reading stdin). Hidden
    with ``--json`` or when stderr is no terminal; transient (cleared when done), so a
    finished command's output stands alone. Use as a context manager around the copy."""

    def __init__(self, description: str, *, total: int | None, hidden: bool) -> None:
        stderr = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
            disable=hidden or not stderr.is_terminal,
        )
        self._task = self.progress.add_task(description, total=total)

    def __call__(self, done: int) -> None:
        self.progress.update(self._task, completed=done)
