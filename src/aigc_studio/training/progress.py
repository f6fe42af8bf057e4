"""What a training run shows while it goes: a Rich progress bar on a terminal, plain lines elsewhere.

On a terminal the bar shows the step, loss, learning rate and throughput; evaluation lines print above it.
When stdout is not a terminal (CI logs, tests, ``nohup``) there is no bar, but every evaluation still prints
one line, so a log shows how the run went.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """A context manager that displays the progress of steps ``start_step..total_steps``.

    Args:
        console: where to print.
        total_steps: the last step of the run.
        start_step: steps already done (a resumed run).
        items_name: the throughput unit ("tokens").
        enabled: whether to print anything at all (False on non-zero ranks).
    """

    def __init__(self, console: Console, total_steps: int, start_step: int, items_name: str, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task_id = None
        if enabled and console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} " + f"{items_name}/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task_id = self._progress.add_task(
                "train", total=total_steps, completed=start_step, loss="-", lr="-", speed="-"
            )

    def __enter__(self) -> TrainingProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, step: int) -> None:
        """Move the bar to ``step`` completed steps."""
        if self._progress is not None:
            self._progress.update(self._task_id, completed=step)

    def update_stats(self, loss: float, lr: float, items_per_s: float) -> None:
        """Show the latest logged loss, learning rate and throughput on the bar."""
        if self._progress is not None:
            self._progress.update(self._task_id, loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{items_per_s:,.0f}")

    def print(self, message: str) -> None:
        """Print a line (above the bar on a terminal)."""
        if self.enabled:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)
