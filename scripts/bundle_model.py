"""Copy a trained run into the package as a bundled model: fp16 weights, a model card, training figures.

    python scripts/bundle_model.py var/e2e/run e2e-copy --license cc-by-sa-4.0 \
        --data "E2E NLG Challenge training set (Novikova, Dušek and Rieser 2017), CC BY-SA 4.0" \
        --metrics-json var/e2e/dev-metrics.json

The bundle lands in ``src/aigc_studio/bundled/NAME/`` (package data, so ``--model NAME`` works anywhere the
package is installed) with ``training_metrics.json`` beside the model files for the benchmarks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aigc_studio.fileio import atomic_write_json
from aigc_studio.models.model_dir import ModelCard, load_pretrained, save_pretrained
from aigc_studio.models.registry import BUNDLED_DIRECTORY

MAX_BUNDLE_MB = 25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_directory", type=Path)
    parser.add_argument("name")
    parser.add_argument("--license", default="other")
    parser.add_argument("--data", default="", help="what the training data is, with its attribution")
    parser.add_argument("--metrics-json", type=Path, help="extra measured metrics (e.g. dev BLEU) for the card")
    args = parser.parse_args()

    loaded = load_pretrained(args.run_directory)
    training = _training_figures(args.run_directory)
    metrics = {key: value for key, value in training.items() if isinstance(value, (int, float))}
    if args.metrics_json:
        metrics.update(json.loads(args.metrics_json.read_text(encoding="utf-8")))
    target = BUNDLED_DIRECTORY / args.name
    save_pretrained(
        loaded.model, loaded.tokenizer, target,
        generation_config=loaded.generation_config,
        dtype=torch.float16,  # halves the file; weights are cast back to fp32 when loaded
        card=ModelCard(
            name=args.name,
            description=(f"Bundled with AIGC Studio and trained by this project ({loaded.model.model_type}, best weights "
                         f"from step {training['best_step']} of {training['steps']}); fp16 weights."),
            data_description=args.data,
            license=args.license,
            recipe=training.get("command", ""),
            num_parameters=loaded.model.num_parameters(),
            metrics=metrics,
            tags=["bundled", loaded.model.model_type],
        ),
    )
    atomic_write_json(target / "training_metrics.json", training)
    size_mb = sum(path.stat().st_size for path in target.iterdir()) / 1e6
    if size_mb > MAX_BUNDLE_MB:
        raise SystemExit(f"{target} is {size_mb:.1f} MB, over the {MAX_BUNDLE_MB} MB budget for a bundled model")
    print(f"bundled {args.run_directory} as {target} ({size_mb:.1f} MB)")


def _training_figures(run_directory: Path) -> dict[str, object]:
    """Steps, wall time and throughput of the run, from its metrics.jsonl and model card."""
    rows = [json.loads(line) for line in (run_directory / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evaluated = [row for row in rows if row.get("val_loss") is not None]
    best = min(evaluated, key=lambda row: row["val_loss"])
    card = (run_directory / "README.md").read_text(encoding="utf-8")
    command = card.split("```bash\n", 1)[1].split("\n```", 1)[0] if "```bash\n" in card else ""
    return {
        "steps": rows[-1]["step"],
        "wall_time_s": rows[-1]["elapsed_s"],
        "tokens_per_s": sum(row["tokens_per_s"] for row in rows) / len(rows),
        "best_val_loss": best["val_loss"],
        "best_step": best["step"],
        "command": command,
    }


if __name__ == "__main__":
    main()
