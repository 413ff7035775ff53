"""`strongroom verify`: re-hash every blob, check every record's blob, replay every log chain
and the audit chain with its Merkle checkpoints; exit 1 when anything is wrong."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from strongroom.cli._context import EXIT_PROBLEMS, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import print_json, stdout_console, verify_summary

__all__ = ["verify"]

_STAGES = {
    "blobs": "Re-hashing blobs",
    "references": "Checking blob references",
    "logs": "Replaying run log chains",
    "audit": "Replaying the audit chain",
}


class _StageProgress:
    """Adapts `vault.verify`'s (stage, done, total) callback to one Rich task per stage."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        task = self._tasks.get(stage)
        if task is None:
            self.finish()  # a new stage starts: earlier ones are complete
            task = self._progress.add_task(_STAGES.get(stage, stage), total=total)
            self._tasks[stage] = task
        self._progress.update(task, completed=done, total=total)

    def finish(self) -> None:
        for task_id in self._tasks.values():
            task = self._progress.tasks[task_id]
            if task.total is None or task.completed < task.total:
                self._progress.update(task_id, total=task.completed)


def verify(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Check the whole vault for tampering and loss; exit 0 when intact, 1 when not."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        stderr = Console(stderr=True)
        progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            disable=state.json or not stderr.is_terminal,
        )
        stages = _StageProgress(progress)
        with progress:
            report = state.run(lambda vault: vault.verify(on_progress=stages))
            stages.finish()
        if state.json:
            print_json({**report.model_dump(mode="json"), "ok": report.ok})
        else:
            console = stdout_console()
            for line in verify_summary(report):
                console.print(line, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)
