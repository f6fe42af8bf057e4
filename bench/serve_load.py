"""Load on a running ``aigc serve``: 1, 4, 16 and 64 concurrent streaming clients, and an optional memory soak.

    .venv/bin/python bench/serve_load.py                       # starts a server with e2e-copy, writes the section
    .venv/bin/python bench/serve_load.py --requests 32 --levels 1,4 --rounds 1 --no-write     # a quick look
    .venv/bin/python bench/serve_load.py --soak-seconds 600    # also 10 minutes at 16 clients: RSS must stay flat
    .venv/bin/python bench/serve_load.py --url http://127.0.0.1:8000 --model e2e-copy   # an already running server

Each level sends the same fixed number of streamed ``/v1/completions`` requests (E2E dev-set attributes,
temperature 1, a seed per request) with that many clients at once, and measures throughput (completion
tokens per second of wall time, from each stream's usage chunk), time to first token, latency to ``[DONE]``,
errors, and the server's resident memory sampled every half second. The levels run in rounds (3 by default),
each round all levels back to back with the same seeds, so a slow minute of a shared machine hits one round
rather than one level. Target (issue 4): throughput at 16 clients at least 4x that at 1 client, no errors,
memory flat over a 10-minute soak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from aigc_studio.server.launcher import start_server
from common import e2e_dev_prompts, markdown_table, write_section

RSS_SAMPLE_S = 0.5


@dataclass
class Outcome:
    """One request: time to first token, total latency and completion tokens, or its error."""

    ttft: float | None = None
    latency: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class LevelResult:
    clients: int
    outcomes: list[Outcome]
    wall: float
    rss_mib: list[float] = field(default_factory=list)

    @property
    def ok(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error is None]

    @property
    def tokens_per_second(self) -> float:
        return sum(outcome.tokens for outcome in self.ok) / self.wall


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Outcome:
    outcome = Outcome()
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Outcome(error=f"{response.status_code}: {response.text[:120]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[len("data: "):]
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    return Outcome(error=chunk["error"]["message"][:120])
                if outcome.ttft is None and any(choice.get("text") for choice in chunk.get("choices", [])):
                    outcome.ttft = time.perf_counter() - started
                if chunk.get("usage"):
                    outcome.tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError as error:
        return Outcome(error=f"{type(error).__name__}: {error}"[:120])
    outcome.latency = time.perf_counter() - started
    return outcome


async def run_level(base: str, model: str, prompts: list[str], clients: int, requests: int, max_tokens: int,
                    first_seed: int) -> tuple[list[Outcome], float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = {"model": model, "prompt": prompts[index % len(prompts)], "max_tokens": max_tokens,
                        "temperature": 1.0, "seed": first_seed + index, "stream": True,
                        "stream_options": {"include_usage": True}}
                outcomes.append(await one_request(client, f"{base}/v1/completions", body))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return outcomes, time.perf_counter() - started


class RssSampler:
    """Samples the resident memory (MiB) of a process and its children (the engine processes) on a thread."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            processes = [self.process, *self.process.children(recursive=True)]
            self.samples.append((time.monotonic(), sum(process.memory_info().rss for process in processes) / 2**20))
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        if self.process is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.process is not None:
            self._thread.join()


def soak(base: str, model: str, prompts: list[str], pid: int | None, seconds: float, max_tokens: int) -> list[str]:
    """16 clients for ``seconds``; RSS in the first and last minute (or tenth) of the run."""
    with RssSampler(pid) as sampler:
        deadline = time.monotonic() + seconds
        total, errors, seed = 0, 0, 10_000
        while time.monotonic() < deadline:
            outcomes, _ = asyncio.run(run_level(base, model, prompts, 16, 64, max_tokens, seed))
            total += len(outcomes)
            errors += sum(outcome.error is not None for outcome in outcomes)
            seed += 64
    if not sampler.samples:
        return [f"Soak: {total} requests in {seconds:.0f} s, {errors} errors (no server process to sample)."]
    start = sampler.samples[0][0]
    window = min(60.0, seconds / 10)
    head = [rss for t, rss in sampler.samples if t - start <= window]
    tail = [rss for t, rss in sampler.samples if sampler.samples[-1][0] - t <= window]
    return [f"Soak at 16 clients for {seconds:.0f} s: {total} requests, {errors} errors; server RSS mean "
            f"{statistics.mean(head):.0f} MiB in the first {window:.0f} s, {statistics.mean(tail):.0f} MiB in the last "
            f"{window:.0f} s (max {max(rss for _, rss in sampler.samples):.0f} MiB)."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="A running server; default: start `aigc serve` for the run.")
    parser.add_argument("--model", default="e2e-copy")
    parser.add_argument("--levels", default="1,4,16,64", help="Concurrent clients per level, comma-separated.")
    parser.add_argument("--requests", type=int, default=128, help="Requests per level.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Run the levels this many times, interleaved; the table shows each level's median round.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--soak-seconds", type=float, default=0.0)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = parser.parse_args()

    prompts = e2e_dev_prompts()
    workdir = tempfile.TemporaryDirectory(prefix="aigc-serve-load-")
    server = None
    if args.url:
        base, pid = args.url.rstrip("/"), None
    else:
        # The server gets the torch threads it would have alone; the load client is one more process beside it.
        server = start_server(Path(workdir.name), "--model", args.model, "--log-level", "warning",
                              env={"AIGC_SERVER__RATE_LIMIT_PER_MINUTE": "0",
                                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))})
        base, pid = server.url, server.pid
    try:
        levels = [int(level) for level in args.levels.split(",")]
        asyncio.run(run_level(base, args.model, prompts, 4, 8, args.max_tokens, 99_000))  # warm-up, not measured
        # The machine's speed drifts over minutes: every round runs all levels back to back, so the ratios of one
        # round compare like with like, and the median round per level stands for it.
        rounds: list[dict[int, LevelResult]] = []
        for round_index in range(args.rounds):
            rounds.append({})
            for clients in levels:
                with RssSampler(pid) as sampler:
                    outcomes, wall = asyncio.run(run_level(base, args.model, prompts, clients, args.requests,
                                                           args.max_tokens, 1000 * clients))
                result = rounds[-1][clients] = LevelResult(clients, outcomes, wall, [rss for _, rss in sampler.samples])
                print(f"round {round_index + 1}, {clients:>3} clients: {result.tokens_per_second:7.1f} tokens/s, "
                      f"{len(outcomes) - len(result.ok)} errors", flush=True)
        results = [sorted((by_level[clients] for by_level in rounds), key=lambda r: r.tokens_per_second)[len(rounds) // 2]
                   for clients in levels]
        notes = soak(base, args.model, prompts, pid, args.soak_seconds, args.max_tokens) if args.soak_seconds else []
        server_info = httpx.get(f"{base}/v1/models").json()["data"][0]
    finally:
        if server is not None:
            server.stop(timeout=60)
        workdir.cleanup()

    rows = []
    for result in results:
        ttft = [outcome.ttft for outcome in result.ok if outcome.ttft is not None]
        latency = [outcome.latency for outcome in result.ok]
        rss = result.rss_mib
        rows.append([
            result.clients, len(result.outcomes), len(result.outcomes) - len(result.ok), f"{result.tokens_per_second:.0f}",
            f"{len(result.ok) / result.wall:.1f}", f"{percentile(ttft, 50) * 1000:.0f} / {percentile(ttft, 99) * 1000:.0f}",
            f"{percentile(latency, 50) * 1000:.0f} / {percentile(latency, 99) * 1000:.0f}",
            f"{rss[0]:.0f} → {rss[-1]:.0f} (max {max(rss):.0f})" if rss else "n/a",
        ])
    table = markdown_table(["clients", "requests", "errors", "tokens/s", "requests/s", "TTFT p50 / p99 (ms)",
                            "latency p50 / p99 (ms)", "server RSS MiB (with its engine process)"], rows)
    by_clients = {result.clients: result.tokens_per_second for result in results}
    lines = [
        "## Serving under load (`bench/serve_load.py`)",
        "",
        f"Streamed `/v1/completions` against `aigc serve --model {args.model}` ({server_info.get('model_type', '')}, "
        f"server defaults: engine batch 16 in its own process, watermark on, rate limit off), {args.requests} "
        "requests per level, "
        f"E2E dev-set attributes, temperature 1, max_tokens {args.max_tokens}; the client runs in another process "
        f"on the same machine. {args.rounds} rounds of all levels, interleaved; each row is its level's median round.",
        "",
        table,
    ]
    if 1 in by_clients and 16 in by_clients:
        ratio = by_clients[16] / by_clients[1]
        paired = [by_level[16].tokens_per_second / by_level[1].tokens_per_second for by_level in rounds]
        lines += ["", f"Throughput at 16 clients is {ratio:.1f}x that at 1 client (target: at least 4x); "
                      f"within each round: {', '.join(f'{value:.1f}x' for value in paired)}."]
    lines += [f"\n{note}" for note in notes]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("serve_load", body)


if __name__ == "__main__":
    main()
