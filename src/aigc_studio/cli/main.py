"""The ``aigc`` Typer application: one sub-command (group) per area, each a thin layer over the library.

Every command parses its flags, calls one library function and prints the result with Rich. Problems the
user can fix surface as :class:`~aigc_studio.errors.AigcError` and are printed here as one line
(``error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from aigc_studio.cli import data, evaluate, generate, safety, train, write
from aigc_studio.errors import AigcError

app = typer.Typer(
    name="aigc",
    help="AIGC Studio: prepare data, train generators, generate and evaluate content.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("generate")(generate.generate)
app.add_typer(safety.pii_app, name="pii")
app.command("moderate")(safety.moderate)
app.command("write")(write.write)
app.add_typer(evaluate.app, name="eval")

USER_ERROR_EXIT_CODE = 2


def main() -> None:
    """Console-script entry point: run the app and turn user errors into one clear line."""
    try:
        app()
    except AigcError as error:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
