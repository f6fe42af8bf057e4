"""Benchmark of the jingle models: validity, key, closeness to the corpus, copying, and speed, per model.

    python bench/music.py                                   # the bundled jingle (LSTM), and var/models/melodies-gpt if trained
    python bench/music.py --models lstm=var/models/melodies-lstm gpt=var/models/melodies-gpt --n 200
    python bench/music.py --quick                           # 16 tunes per model: a smoke run, not figures

For each model: compose ``--n`` tunes of ``--bars`` bars (rotating over the mode/meter pairs the corpus has
most of, 8 tunes per request, seeds 0, 1, ...), render each to WAV (FluidSynth) and MP3 when ffmpeg is
present, then score them with ``aigc eval music`` against the prepared corpus (``--data``, made with
``aigc data prepare-music`` if missing). Writes the ``music`` section of docs/benchmarks.md.
Targets from issue 9: parse rate and bar correctness 100 %, in-key share >= 0.95, no tune with a copied run
of 12 notes or more.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, markdown_table, write_section  # noqa: E402

from aigc_studio.music.compose import ComposeRequest, MusicModel, compose  # noqa: E402
from aigc_studio.music.corpus import MUSIC_INFO_FILE, prepare_music_dataset  # noqa: E402
from aigc_studio.music.evaluate import evaluate_music  # noqa: E402

BATCH = 8


def default_models() -> dict[str, str]:
    """The bundled jingle model, and the GPT of recipes/melodies-gpt.toml when it has been trained."""
    models = {"jingle (bundled LSTM)": "jingle"}
    gpt = REPO_ROOT / "var" / "models" / "melodies-gpt"
    if (gpt / "config.json").is_file():
        models["gpt (var/models/melodies-gpt)"] = str(gpt)
    return models


def settings_for(data: Path, model: MusicModel) -> list[tuple[str, str]]:
    """The (mode, meter) pairs to rotate over: the corpus's three most common meters the model knows, both modes."""
    counts = json.loads((data / MUSIC_INFO_FILE).read_text())["per_meter"]
    meters = [meter for meter, _ in Counter(counts).most_common() if meter in model.meters][:3]
    return [(mode, meter) for meter in meters for mode in ("major", "minor")]


def run_model(name: str, directory: str, data: Path, n: int, bars: int, out: Path) -> dict[str, object]:
    model = MusicModel(directory)
    pairs = settings_for(data, model)
    started = time.perf_counter()
    written = refused = 0
    for batch, seed in enumerate(range(0, n, BATCH)):
        mode, meter = pairs[batch % len(pairs)]
        count = min(BATCH, n - written)
        request = ComposeRequest(key="D" if mode == "major" else "E", mode=mode, meter=meter, bars=bars, tempo=120,
                                 instrument="fiddle", n=count, seed=seed)
        result = compose(model, request, out / f"batch-{batch:03d}")
        written += len(result.tunes)
        refused += result.rejected_for_copying
    seconds_per_tune = (time.perf_counter() - started) / written
    # evaluate all batches together: evaluate_music reads one folder, so link the records into one
    merged = out / "all"
    merged.mkdir()
    for index, record in enumerate(sorted(out.glob("batch-*/tune-*.json"))):
        if record.name.count(".") > 1:
            continue
        content = json.loads(record.read_text())
        mid = content.get("files", {}).get("mid")
        if mid:
            (merged / f"tune-{index:04d}.mid").write_bytes((record.parent / mid).read_bytes())
            content["files"]["mid"] = f"tune-{index:04d}.mid"
        (merged / f"tune-{index:04d}.json").write_text(json.dumps(content))
    report = evaluate_music(merged, data).to_dict()
    return {"name": name, "seconds_per_tune": seconds_per_tune, "refused_for_copying": refused, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="name=directory pairs (default: bundled jingle, var/models/melodies-*)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "var" / "data" / "music")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 16 if args.quick else args.n
    if not (args.data / MUSIC_INFO_FILE).is_file():
        prepare_music_dataset(args.data, collections=["ryans", "oneills"])
    models = dict(item.split("=", 1) for item in args.models) if args.models else default_models()
    rows = []
    for name, directory in models.items():
        with tempfile.TemporaryDirectory(prefix="bench-music-") as scratch:
            result = run_model(name, directory, args.data, n, args.bars, Path(scratch))
        print(json.dumps(result))
        rows.append([
            result["name"], result["tunes"], f"{result['parse_rate']:.1%}", f"{result['bar_correctness']:.1%}",
            f"{result['ends_on_tonic']:.1%}", f"{result['in_key']:.3f}",
            f"{result['histogram_distance']:.3f} / {result['histogram_distance_shuffled']:.3f} / {result['histogram_distance_heldout'] if result['histogram_distance_heldout'] is None else format(result['histogram_distance_heldout'], '.3f')}",
            f"{result['distinct_4grams']:.3f}", result["longest_copied_run"], f"{result['copied_12_or_more']:.1%}",
            result["refused_for_copying"],
            f"{result['seconds_per_tune']:.2f}",
        ])
    body = (
        f"## Jingles (issue 9): `aigc compose` + `aigc eval music`\n\n{n} tunes of {args.bars} bars per model, 8 per request, "
        "rotating over the corpus's three most common meters in major and minor; each rendered with FluidSynth "
        "(and MP3 with ffmpeg). Histogram distance: total variation between pitch-class histograms, generated vs "
        "training tunes of the same mode / the generated notes with the 12 pitch classes shuffled / held-out "
        "tunes (lower is closer). Copied run: longest run of notes found in one corpus tune; compose refuses a sample with 12+ and draws "
        "another, so the refusals column counts how often the check fired.\n\n"
        + markdown_table(["model", "tunes", "parse rate", "bars right", "ends on tonic", "in key",
                          "histogram distance (gen / shuffled / held-out)", "distinct 4-grams", "longest copied run",
                          "copied 12+", "samples refused for copying (re-drawn)", "s per tune (compose + render)"], rows)
    )
    write_section("music", body)


if __name__ == "__main__":
    main()
