"""A progress display on stderr for the long commands (run-bench, its sweep and tile runs; partition --codec auto)."""
from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from splitnn.cli.render import stderr

if TYPE_CHECKING:  # rich.progress is imported when a display starts, not with the command line
    from rich.progress import TaskID


class Progress:
    """A rich progress display on stderr, one bar per stage name; called as progress(stage, done, total)."""

    def __enter__(self) -> "Progress":
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # Redrawn only when a step completes, not by a display thread ten times a second: the emulated device
        # and the server share this machine's cores with it.
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=stderr(), transient=True, auto_refresh=False)
        # Bars only where they can be redrawn: on a pipe rich draws none, and stopping printed an empty line before
        # whatever came next on stderr (an error's one line). Unstarted, the bars are kept but never drawn.
        self.shown = self.bar.console.is_interactive
        if self.shown:
            self.bar.__enter__()
        self.tasks: dict[str, TaskID] = {}
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, visible=stage.startswith("cuts") or done < total, refresh=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.shown:
            self.bar.__exit__(kind, error, traceback)
