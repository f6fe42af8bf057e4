"""``aigc watermark detect``: test JSON Lines texts for this installation's text watermark.

    aigc generate --model e2e-copy --prompt "name[The Eagle], eatType[pub]" --watermark --min-tokens 60
    aigc watermark detect --model e2e-copy --input texts.jsonl --output verdicts.jsonl

Input lines are ``{"id": ..., "text": "..."}``; every output line is the input line plus ``"z"``, ``"p_value"``,
``"watermarked"``, ``"num_tokens_scored"`` and ``"num_green"``. The key, gamma and threshold come from the
settings (``[watermark]`` in aigc.toml) unless given as flags. ``cli/main.py`` registers ``app`` as
``aigc watermark``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.models.registry import resolve_model
from aigc_studio.safety.watermark import WatermarkConfig, detect_jsonl
from aigc_studio.settings import load_settings

app = typer.Typer(help="Detect the keyed text watermark (Kirchenbauer et al. 2023).", no_args_is_help=True)


@app.command("detect")
def detect(
    model: Annotated[str, typer.Option(help="The model that wrote the texts (directory or bundled name): its tokenizer and vocabulary.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help='JSON Lines file of {"id", "text"} objects.')],
    output_path: Annotated[Path, typer.Option("--output", "-o", help='Where to write the lines with "z", "p_value" and "watermarked".')],
    key_file: Annotated[Optional[Path], typer.Option(help="The key used at generation (default: the settings' watermark.key_file).")] = None,
    threshold: Annotated[Optional[float], typer.Option(min=0.0, help="z-score from which a text counts as watermarked (default: the settings', 4.0).")] = None,
) -> None:
    """Score each text's green tokens under the key; a z-score above the threshold means watermarked."""
    settings = load_settings().watermark
    # Detection never creates a key: a fresh key would call every text unmarked.
    config = WatermarkConfig.from_key_file(key_file or settings.key_file, gamma=settings.gamma, delta=settings.delta,
                                           z_threshold=threshold if threshold is not None else settings.z_threshold)
    backend = BuiltinBackend.from_directory(resolve_model(model), name=Path(model).name)
    report = detect_jsonl(input_path, output_path, backend.tokenizer, config, vocab_size=backend.model.config.vocab_size)
    Console(highlight=False).print(
        Text(f"{report.watermarked:,} of {report.rows:,} texts carry the watermark of key {config.key_id} "
             f"(z >= {config.z_threshold:g}); wrote {report.output}"),
        soft_wrap=True,
    )
