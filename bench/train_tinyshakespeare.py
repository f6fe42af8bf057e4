"""Training quality and speed on Tiny Shakespeare (character level), nanoGPT's CPU example.

1. Quality: the full ``recipes/tinyshakespeare-char.toml`` run (4 layers, 4 heads, 128 dims, block 64,
   batch 12, 2000 iterations) through ``aigc train``'s library call; nanoGPT reports a validation loss of
   about 1.88 for this configuration. Reports wall time, tokens/s and peak memory.
2. Overhead: tokens/s of the Trainer against a bare PyTorch loop (random windows from the same memmap,
   AdamW, clipping, the same model) over the same number of steps, measured in this run, bare loop before
   and after the Trainer so drift on a noisy machine shows; plus model FLOPs utilisation against a measured
   fp32 matmul peak.

    python bench/train_tinyshakespeare.py [--threads 2] [--overhead-steps 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aigc_studio.data.prepare import PrepareConfig, prepare_dataset
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.training.run import run_training

from common import REPO_ROOT, SHARED_DATA, markdown_table, measured_matmul_peak_flops, peak_rss_mib, write_section

RECIPE = REPO_ROOT / "recipes" / "tinyshakespeare-char.toml"
BATCH_SIZE, BLOCK_SIZE = 12, 64
TARGET_VAL_LOSS = 1.88


def training_flops_per_token(config: GPTConfig) -> float:
    """Forward + backward matmul FLOPs per token: 3x the forward's 2 per weight and the causal attention."""
    per_layer = 4 * config.n_embd**2 + 3 * config.n_embd * config.intermediate_size
    weights = config.n_layer * per_layer + config.n_embd * config.vocab_size
    attention = config.n_layer * 2 * BLOCK_SIZE * config.n_embd  # average causal context is T/2, two matmuls
    return 3 * (2 * weights + 2 * attention)


def bare_loop_tokens_per_s(data_dir: Path, vocab_size: int, steps: int) -> float:
    """The plainest correct training loop for the same model and batch: what the Trainer is measured against."""
    tokens = np.memmap(next(data_dir.glob("train-*.bin")), dtype=np.uint16, mode="r")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=4, n_head=4, n_embd=128, tie_embeddings=True))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    model.train()
    start = None
    for step in range(steps + 10):
        if step == 10:  # the first steps warm the allocator and thread pool
            start = time.perf_counter()
        offsets = torch.randint(len(tokens) - BLOCK_SIZE - 1, (BATCH_SIZE,))
        rows = np.stack([tokens[i : i + BLOCK_SIZE + 1] for i in offsets.tolist()]).astype(np.int64)
        x, y = torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])
        _, loss = model(x, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    return steps * BATCH_SIZE * BLOCK_SIZE / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overhead-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        info = prepare_dataset([SHARED_DATA / "tinyshakespeare" / "input.txt"], data_dir, PrepareConfig(tokenizer="char"))
        vocab_size = info["tokenizer"]["vocab_size"]
        common = {"data.directory": str(data_dir), "threads": args.threads}

        # 1. the full recipe
        full = run_training(Path(tmp) / "full", config_path=RECIPE, overrides=common)
        full_rss = peak_rss_mib()

        # 2. overhead: bare loop, Trainer (no evaluation inside the timed steps), bare loop again
        steps = args.overhead_steps
        bare_before = bare_loop_tokens_per_s(data_dir, vocab_size, steps)
        short = run_training(Path(tmp) / "short", config_path=RECIPE, overrides={
            **common, "schedule.max_steps": steps, "schedule.warmup_steps": 10, "eval.interval": steps, "eval.steps": 1,
        })
        bare_after = bare_loop_tokens_per_s(data_dir, vocab_size, steps)

    bare = (bare_before + bare_after) / 2
    overhead = 1 - short.items_per_s / bare
    config = GPTConfig(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=4, n_head=4, n_embd=128)
    peak = measured_matmul_peak_flops()
    mfu = full.items_per_s * training_flops_per_token(config) / peak
    status = "meets" if full.best_val_loss <= TARGET_VAL_LOSS else "misses"

    body = "\n".join([
        "## Training: Tiny Shakespeare, character level (issue 2)",
        "",
        f"`recipes/tinyshakespeare-char.toml` (nanoGPT's CPU example), {args.threads} CPU threads.",
        "",
        markdown_table(["measure", "value"], [
            ["best validation loss", f"{full.best_val_loss:.4f} at step {full.best_step} ({status} the ≤ {TARGET_VAL_LOSS} target)"],
            ["steps / status", f"{full.step} / {full.status}"],
            ["wall time (training + evaluation)", f"{full.wall_time_s:.1f} s"],
            ["training throughput", f"{full.items_per_s:,.0f} tokens/s"],
            ["model FLOPs utilisation", f"{mfu:.1%} of a measured {peak / 1e9:.1f} GFLOP/s fp32 matmul peak"],
            ["peak RSS", f"{full_rss:.0f} MiB"],
        ]),
        "",
        f"Trainer against a bare PyTorch loop, {steps} steps each, same model and batch, same process:",
        "",
        markdown_table(["loop", "tokens/s"], [
            ["bare loop (before)", f"{bare_before:,.0f}"],
            ["Trainer (`aigc train`)", f"{short.items_per_s:,.0f}"],
            ["bare loop (after)", f"{bare_after:,.0f}"],
        ]),
        "",
        f"- Trainer overhead: **{overhead:.1%}** (target < 5%; negative means the Trainer was faster)",
    ])
    print(body)
    write_section("train-tinyshakespeare", body)


if __name__ == "__main__":
    main()
