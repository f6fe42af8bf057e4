"""Design sketches on the command line: prepare image data, sketch, evaluate, verify provenance.

    aigc data prepare-images ../shared/data/fashion-mnist --out var/data/fashion
    aigc sketch --model var/models/fashion-diffusion --label sneaker --n 8 --seed 7 --out out/sneakers
    aigc sketch --model var/models/fashion-vae --label dress --interpolate 1 2 --n 8 --out out/walk
    aigc sketch --model var/models/fashion-diffusion --label sneaker --from out/sneakers/000.png --strength 0.5 --out out/var
    aigc eval images --generated out/sneakers --real var/data/fashion --classifier var/models/fashion-classifier
    aigc provenance verify out/sneakers/000.png

``cli/main.py`` registers ``prepare_images`` (under ``aigc data``), ``sketch``, ``eval_images`` (under
``aigc eval``) and the ``provenance_app`` group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aigc_studio.data.images import prepare_image_dataset
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.images import DEFAULT_CLASSIFIER, evaluate_images, write_image_report
from aigc_studio.images.pipeline import generate_sketches, interpolate_sketches, save_sketches, sketch_variations
from aigc_studio.images.provenance import C2paSigner, verify_png
from aigc_studio.images.sampling import SamplingOptions

console = Console(highlight=False)
_DIFFUSION = "Diffusion sampling"


def prepare_images(
    source: Path = typer.Argument(..., help="A Fashion-MNIST folder (IDX files) or a folder of class folders (class_name/*.png|jpg)."),
    out: Path = typer.Option(..., "--out", "-o", help="Prepared data set directory to write."),
    size: int = typer.Option(28, "--size", help="Side of the square images, a multiple of 4 (8-256)."),
    channels: int = typer.Option(1, "--channels", help="1 (grey) or 3 (colour)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of each class held out for validation."),
    seed: int = typer.Option(1337, "--seed", help="Seed of the stratified split."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Keep only the first N images (quick runs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a data set already prepared in --out."),
) -> None:
    """Resize, normalise and split images into a data set for `aigc train --arch vae|gan|diffusion|classifier`."""
    info = prepare_image_dataset(source, out, image_size=size, channels=channels, val_fraction=val_fraction, seed=seed,
                                 limit=limit, overwrite=overwrite)
    console.print(f"{info['num_train']:,} training and {info['num_val']:,} validation images "
                  f"({size}x{size}, {len(info['class_names'])} classes: {', '.join(info['class_names'])}) in {escape(str(out))}")


def sketch(
    model: str = typer.Option(..., "--model", help="Image model directory (from `aigc train --arch vae|gan|diffusion`) or a bundled name."),
    label: str = typer.Option(..., "--label", help="Class by index or name (t-shirt, trouser, ..., ankle-boot; user data: folder names)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for 000.png, 001.png, ... and contact-sheet.png."),
    n: int = typer.Option(8, "--n", help="How many sketches (frames with --interpolate)."),
    seed: int = typer.Option(0, "--seed", help="Fixes the sketches: same seed, same pixels."),
    interpolate: Optional[tuple[int, int]] = typer.Option(None, "--interpolate", metavar="SEED_A SEED_B",
                                                         help="Walk from the sketch of SEED_A to that of SEED_B in --n frames."),
    from_image: Optional[Path] = typer.Option(None, "--from", help="Make variations of this image (VAE or diffusion)."),
    strength: float = typer.Option(0.5, "--strength", help="With --from: 0 keeps the image, 1 ignores it."),
    size: Optional[int] = typer.Option(None, "--size", help="Output side in pixels (upscaled for viewing; default: the model's)."),
    steps: int = typer.Option(25, "--steps", help="DDIM steps.", rich_help_panel=_DIFFUSION),
    guidance: float = typer.Option(2.0, "--guidance", help="Classifier-free guidance weight (1: none).", rich_help_panel=_DIFFUSION),
    c2pa: bool = typer.Option(False, "--c2pa", help="Also embed a signed C2PA manifest (needs c2pa-python; local certificate in the c2pa_directory setting, var/c2pa)."),
) -> None:
    """Generate product design sketches of one class as PNG files carrying their generation record."""
    if interpolate is not None and from_image is not None:
        raise AigcError("pass --interpolate or --from, not both", param="interpolate")
    options = SamplingOptions(steps=steps, guidance=guidance)
    if interpolate is not None:
        batch = interpolate_sketches(model, label, interpolate[0], interpolate[1], n, options=options, size=size)
    elif from_image is not None:
        batch = sketch_variations(model, from_image, label, n, seed, strength=strength, options=options, size=size)
    else:
        batch = generate_sketches(model, label, n, seed, options=options, size=size)
    signer = C2paSigner() if c2pa else None
    paths = save_sketches(batch, out, c2pa_signer=signer)
    console.print(f"{len(batch.sketches)} {escape(batch.label)} sketches from {escape(batch.model)} in {escape(str(out))} "
                  f"(contact sheet: {escape(str(paths[-1]))})")


def eval_images(
    generated: Path = typer.Option(..., "--generated", help="Folder of generated PNGs (labels from their records or class folders)."),
    real: Path = typer.Option(..., "--real", help="Prepared image data set, Fashion-MNIST IDX folder, or folder of class folders."),
    classifier: str = typer.Option(DEFAULT_CLASSIFIER, "--classifier", help="Judge: a model trained with --arch classifier."),
    report: Optional[Path] = typer.Option(None, "--report", help="HTML report to write (sample grids per class)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="JSON results (default: next to --report)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the real subset and the KID subsets."),
) -> None:
    """Domain FID and KID, class accuracy, diversity and memorisation of generated sketches."""
    result, fake = evaluate_images(generated, real, classifier=classifier, seed=seed)
    if json_out is None and report is not None:
        json_out = report.with_suffix(".json")
    written = write_image_report(result, fake, html_path=report, json_path=json_out)
    table = Table(title=f"{result.counts['generated']} generated vs {result.counts['real']} real images", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    for path in written:
        console.print(f"wrote {escape(str(path))}")


provenance_app = typer.Typer(help="Read and check the provenance of generated content.", no_args_is_help=True)


@provenance_app.command("verify")
def verify(
    file: Path = typer.Argument(..., help="A PNG written by `aigc sketch` (or the server)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check a PNG's generation record against its pixels (and its C2PA manifest when present). Exit 1 if it fails."""
    result = verify_png(file)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        colour = "green" if result.ok else "red"
        console.print(f"[bold {colour}]{result.status}[/]: {escape(result.message)}")
        if result.record is not None:
            record = result.record
            console.print(f"model {escape(record.model)} ({record.model_type}, weights sha256 {record.model_sha256[:16]}...), "
                          f"label {escape(record.label)}, seed {record.seed}, parameters {escape(json.dumps(record.parameters))}")
    if not result.ok:
        raise typer.Exit(1)
