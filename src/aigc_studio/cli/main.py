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

from aigc_studio.cli import admin, data, evaluate, generate, images, models, safety, serve, support, train, watermark, write
from aigc_studio.cli import audio
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
app.add_typer(watermark.app, name="watermark")
app.command("moderate")(safety.moderate)
app.command("write")(write.write)
app.add_typer(evaluate.app, name="eval")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(admin.db_app, name="db")
app.command("serve")(serve.serve)
app.add_typer(support.app, name="support")
data.app.command("prepare-images")(images.prepare_images)
evaluate.app.command("images")(images.eval_images)
app.command("sketch")(images.sketch)
app.add_typer(images.provenance_app, name="provenance")
app.add_typer(models.app, name="models")
app.command("export")(models.export)
data.app.command("prepare-music")(audio.prepare_music)
app.command("compose")(audio.compose)
app.command("voice")(audio.voice)
app.command("audio-ad")(audio.audio_ad)
evaluate.app.command("music")(audio.eval_music)

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
