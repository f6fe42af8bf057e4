"""The serving engine without HTTP: 1 and 16 concurrent requests through ``Engine``, beside the bare model step.

    python bench/engine_load.py [--model e2e-copy] [--requests 128] [--rounds 3] [--threads 1]

`bench/serve_load.py` measures the whole server; this script takes the HTTP layer away, so the two together
say which side limits throughput. Clients are threads that submit a request, read its events as a stream
would, and submit the next; every request asks for exactly ``--max-tokens`` tokens for E2E dev-set attributes
(the prompts `serve_load.py` sends; temperature 1, a seed each), with the server's watermark. The ceiling is the bare model step (``GPT.step`` on one token per row,
KV cache, greedy) at batch 1 and 16. Levels run in interleaved rounds; each figure is the median over them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from aigc_studio.backends.registry import load_backend
from aigc_studio.generation.engine import Engine
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety.watermark import WatermarkConfig
from aigc_studio.settings import WatermarkSettings
from common import e2e_dev_prompts, markdown_table, write_section



def engine_tokens_per_second(engine: Engine, prompts: list[str], clients: int, requests: int, max_tokens: int,
                             watermark: WatermarkConfig) -> float:
    """Completion tokens per second of wall time for ``requests`` streamed requests, ``clients`` at a time."""
    counts: list[int] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for number in range(index, requests, clients):
            params = SamplingParams(temperature=1.0, max_tokens=max_tokens, min_tokens=max_tokens, seed=number,
                                    watermark=watermark)
            handle = engine.submit(prompts[number % len(prompts)], params)
            for _ in handle.events():
                pass
            tokens = handle.result().completion_tokens
            with lock:
                counts.append(tokens)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


@torch.inference_mode()
def bare_step_ms(model: torch.nn.Module, batch_size: int, prompt_tokens: int = 16) -> float:
    """Milliseconds per ``GPT.step`` of one token per row after a short prompt, over the rest of the context."""
    steps = model.config.block_size - prompt_tokens - 5
    state = model.init_state(batch_size, model.config.block_size)
    tokens = model.step(torch.randint(5, 100, (batch_size, prompt_tokens)), state)[:, -1].argmax(-1, keepdim=True)
    for _ in range(5):
        tokens = model.step(tokens, state)[:, -1].argmax(-1, keepdim=True)
    started = time.perf_counter()
    for _ in range(steps):
        tokens = model.step(tokens, state)[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="e2e-copy")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the server's engine shares the machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backend = load_backend(args.model)
    prompts = e2e_dev_prompts()
    with tempfile.TemporaryDirectory() as directory:
        watermark = WatermarkConfig.from_settings(WatermarkSettings(key_file=Path(directory) / "watermark.key"), create=True)
    engine = Engine(backend, max_batch_size=16)
    engine.start()
    levels = (1, 16)
    rounds: list[dict[int, float]] = []
    try:
        engine_tokens_per_second(engine, prompts, 4, 8, args.max_tokens, watermark)  # warm-up
        for round_index in range(args.rounds):
            rounds.append({clients: engine_tokens_per_second(engine, prompts, clients, args.requests, args.max_tokens, watermark)
                           for clients in levels})
            print(f"round {round_index + 1}: " + ", ".join(f"{c} clients {rounds[-1][c]:.0f} tokens/s" for c in levels),
                  flush=True)
    finally:
        engine.shutdown()
    steps = {batch: statistics.median(bare_step_ms(backend.model, batch) for _ in range(3)) for batch in levels}

    median = {clients: statistics.median(round_[clients] for round_ in rounds) for clients in levels}
    rows = [[clients, f"{median[clients]:.0f}", f"{clients / steps[clients] * 1000:.0f}", f"{steps[clients]:.2f}",
             f"{median[clients] / (clients / steps[clients] * 1000):.0%}"] for clients in levels]
    paired = ", ".join(f"{round_[16] / round_[1]:.1f}x" for round_ in rounds)
    body = "\n".join([
        "## Serving engine without HTTP (`bench/engine_load.py`)",
        "",
        f"`Engine` over `{args.model}` ({args.threads} torch thread(s), batch up to 16), clients as threads, "
        f"{args.requests} requests per level of exactly {args.max_tokens} tokens (E2E dev-set attributes, temperature 1, "
        f"watermark on), events read as a stream would; {args.rounds} interleaved rounds, each figure the median over "
        "them. The ceiling is the bare model step at that batch size (one token per row, KV cache).",
        "",
        markdown_table(["clients", "tokens/s", "ceiling tokens/s (bare step)", "bare step ms", "of ceiling"], rows),
        "",
        f"16 clients give {median[16] / median[1]:.1f}x the tokens/s of 1 client (per round: {paired}); the bare "
        f"model step alone would give {steps[1] * 16 / steps[16]:.1f}x.",
    ])
    print(body)
    write_section("engine_load", body)


if __name__ == "__main__":
    main()
