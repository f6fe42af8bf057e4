"""The batch loop alone: newcomers prefilled in the running rows' pass (``GPT.step_many``) or in passes of their own.

    python bench/decode_batch.py [--model e2e-copy] [--requests 96] [--rounds 8] [--threads 1]

A closed loop without threads or HTTP: ``DecodeBatch`` holds up to ``--clients`` requests, and each one that
finishes is replaced by the next at once, as the engine does under load. Requests are what the server runs
for ``bench/serve_load.py`` (E2E dev-set attributes, temperature 1, the watermark, their natural length up to
64 tokens). The comparison runs the same model twice: as it is, and behind a wrapper that offers only
``step``, so each newcomer's prefill is a pass of its own (the model contract's fallback). The two alternate
round by round at 1 and at 16 requests; each figure is the median over the rounds, and the ratio column is
the median of the per-round ratios (the machine's speed drifts, so only side-by-side figures compare).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from aigc_studio.backends.registry import load_backend
from aigc_studio.generation.sampler import DecodeBatch
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety.watermark import WatermarkConfig
from aigc_studio.settings import WatermarkSettings
from common import e2e_dev_prompts, markdown_table, peak_rss_mib, write_section


class SeparatePrefill(nn.Module):
    """The model behind the decoding contract without ``step_many``: every call is a pass of its own."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config

    def init_state(self, *args, **kwargs):
        return self.inner.init_state(*args, **kwargs)

    def step(self, *args, **kwargs) -> torch.Tensor:
        return self.inner.step(*args, **kwargs)


def closed_loop_tokens_per_second(model: nn.Module, tokenizer, prompt_ids: list[list[int]], clients: int, requests: int,
                                  max_tokens: int, watermark: WatermarkConfig) -> float:
    """Tokens per second of ``requests`` requests through one ``DecodeBatch``, ``clients`` at a time."""
    batch = DecodeBatch(model, tokenizer)
    submitted = tokens = 0

    def submit() -> None:
        nonlocal submitted
        params = SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=submitted, watermark=watermark)
        batch.add([prompt_ids[submitted % len(prompt_ids)]], params, text_every_step=True)
        submitted += 1

    start = time.perf_counter()
    for _ in range(min(clients, requests)):
        submit()
    while batch.num_rows:
        for group, candidates in batch.step():
            tokens += len(candidates)
            if not group.active and submitted < requests:
                submit()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="e2e-copy")
    parser.add_argument("--requests", type=int, default=96, help="Requests per run at 16 at a time (a sixth at 1).")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the server's engine runs on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backend = load_backend(args.model)
    if not hasattr(backend.model, "step_many"):
        raise SystemExit(f"{args.model} has no step_many (only GPT models do); choose a GPT model with --model")
    prompt_ids = [backend.encode_prompt(prompt) for prompt in e2e_dev_prompts()]
    with tempfile.TemporaryDirectory() as directory:
        watermark = WatermarkConfig.from_settings(WatermarkSettings(key_file=Path(directory) / "watermark.key"), create=True)
    variants = {"one pass (step_many)": backend.model, "a pass per prefill": SeparatePrefill(backend.model)}
    levels = {1: max(1, args.requests // 6), 16: args.requests}

    def run(model: nn.Module, clients: int, requests: int) -> float:
        return closed_loop_tokens_per_second(model, backend.tokenizer, prompt_ids, clients, requests, args.max_tokens,
                                             watermark)

    run(backend.model, 4, 16)  # warm-up: green lists, allocator
    figures: dict[tuple[str, int], list[float]] = {(name, clients): [] for name in variants for clients in levels}
    for round_index in range(args.rounds):
        for clients in levels:
            for name, model in variants.items():
                figures[name, clients].append(run(model, clients, levels[clients]))
        print(f"round {round_index + 1}: " + ", ".join(f"{name} at {clients}: {values[-1]:.0f} tokens/s"
                                                      for (name, clients), values in figures.items()), flush=True)

    fused, separate = variants
    rows = []
    for clients in levels:
        ratios = [a / b for a, b in zip(figures[fused, clients], figures[separate, clients])]
        rows.append([clients, f"{statistics.median(figures[fused, clients]):.0f}",
                     f"{statistics.median(figures[separate, clients]):.0f}", f"{statistics.median(ratios):.2f}x"])
    body = "\n".join([
        "## Continuous batching: newcomers prefilled in the decode pass (`bench/decode_batch.py`)",
        "",
        f"`DecodeBatch` over `{args.model}` in a closed loop ({args.threads} torch thread(s); a finished request is "
        f"replaced at once): {levels[16]} requests at 16 at a time, {levels[1]} at 1, E2E dev-set attributes, "
        f"temperature 1, watermark on, natural length up to {args.max_tokens} tokens. The same model with "
        "`step_many` and behind a wrapper without it (each prefill a pass of its own), alternating; medians of "
        f"{args.rounds} rounds, the ratio is the median of the per-round ratios.",
        "",
        markdown_table(["requests at a time", "tokens/s, one pass", "tokens/s, a pass per prefill", "ratio"], rows),
        "",
        f"At 1 request the batch is empty whenever a request joins, so both do the same work. Peak memory "
        f"{peak_rss_mib():.0f} MiB.",
    ])
    print(body)
    write_section("decode_batch", body)


if __name__ == "__main__":
    main()
