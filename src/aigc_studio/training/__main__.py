"""``python -m aigc_studio.training``: the ``aigc train`` command on its own (same flags).

A separate entry point so that ``torchrun --nproc-per-node N -m aigc_studio.training ...`` (which
``aigc train --nproc N`` runs) can start every training process without the rest of the command line, and
so that tests can start it as a subprocess.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from aigc_studio.cli.train import INTERRUPTED_EXIT_CODE, train
from aigc_studio.errors import AigcError

USER_ERROR_EXIT_CODE = 2


def main() -> None:
    """Run ``train`` and turn user errors into one clear line (as the ``aigc`` entry point does)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train)
    try:
        app()
    except AigcError as error:
        # Under torchrun every process reports; the rank says which one (a rank-specific failure is not lost).
        rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
        prefix = f"[rank {rank}] " if rank != "0" else ""
        # Escaped: messages name recipe tables such as [model], which Rich would otherwise read as markup.
        Console(stderr=True, highlight=False).print(f"{escape(prefix)}[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
    main()
