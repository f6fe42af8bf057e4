"""``loss.png``: the training and validation loss curves of a run, drawn from its metrics rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aigc_studio.fileio import atomic_write_with


def plot_loss_curves(metrics: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw train and val loss against the step and atomically write the PNG to ``path``.

    Args:
        metrics: ``metrics.jsonl`` rows (``step``, ``train_loss`` and, on evaluation rows, ``val_loss``).
        path: the PNG to write.
        title: the figure title (e.g. the run directory).

    Returns:
        ``path``.
    """
    train = [(row["step"], row["train_loss"]) for row in metrics if row.get("train_loss") is not None]
    val = [(row["step"], row["val_loss"]) for row in metrics if row.get("val_loss") is not None]
    # A bare Figure on the Agg canvas: no pyplot global state, no GUI backend, safe in servers and threads.
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="train", linewidth=1.0, alpha=0.8)
    if val:
        axes.plot(*zip(*val), label="val", marker="o", markersize=3, linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if train or val:
        axes.legend()
    figure.tight_layout()
    return atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))
