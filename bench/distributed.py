"""Distributed data-parallel scaling on this machine: tokens/s on 1 and 2 processes, and the communication share.

1. Throughput: the same small GPT (4 layers, 4 heads, 128 dims, block 64) and the same global batch of 16
   windows of Tiny Shakespeare, trained for ``--steps`` steps by ``run_training`` on 1 process (1 thread, then
   2 threads) and on 2 gloo processes of 1 thread each (forked, with the variables torchrun sets). Tokens/s
   are the Trainer's own (global batch tokens per second of training steps), the median over logged spans
   after the first (warm-up).
2. Communication share of a step on 2 processes: each rank times the same DDP steps (forward, backward,
   AdamW); a DDP comm hook times every gradient all-reduce (its share of the step), and the same steps inside
   ``no_sync`` (no all-reduce) give the part of it the backward pass does not hide,
   ``(t_sync - t_no_sync) / t_sync``.

    python bench/distributed.py [--steps 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aigc_studio.data.dataset import TokenDataset
from aigc_studio.data.prepare import PrepareConfig, prepare_dataset
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.training.distributed import DistributedEnv, process_group, wrap_networks
from aigc_studio.training.run import run_training

from common import SHARED_DATA, markdown_table, write_section

GLOBAL_BATCH, BLOCK_SIZE = 16, 64
MODEL = {"model.arch": "gpt", "model.n_layer": 4, "model.n_head": 4, "model.n_embd": 128}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_rank_env(rank: int, world_size: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _train_rank(rank: int, world_size: int, port: int, out: str, overrides: dict[str, Any]) -> None:
    set_rank_env(rank, world_size, port)
    run_training(out, overrides=overrides)


def training_tokens_per_s(data: Path, out: Path, *, processes: int, threads: int, steps: int) -> float:
    """Median tokens/s over the logged spans after the first, of a ``steps``-step run on ``processes`` processes."""
    overrides = {**MODEL, "data.directory": str(data), "data.block_size": BLOCK_SIZE, "data.batch_size": GLOBAL_BATCH,
                 "schedule.max_steps": steps, "schedule.warmup_steps": 2, "eval.interval": steps, "eval.steps": 1,
                 "logging.log_interval": 5, "logging.checkpoint_interval": steps, "threads": threads}
    if processes == 1:
        run_training(out, overrides=overrides)
    else:
        mp.start_processes(_train_rank, args=(processes, free_port(), str(out), overrides), nprocs=processes, start_method="fork")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return statistics.median(row["tokens_per_s"] for row in rows[1:])


def _timed_allreduce_hook(durations, bucket):  # noqa: ANN001, ANN202 - DDP checks the annotations, and strings fail
    """DDP's default all-reduce (sum, then divide by the world size), recording how long each bucket's took."""
    start = time.perf_counter()
    tensor = bucket.buffer().div_(dist.get_world_size())

    def finished(future: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        durations.append(time.perf_counter() - start)
        return future.value()[0]

    return dist.all_reduce(tensor, async_op=True).get_future().then(finished)


def _comm_rank(rank: int, world_size: int, port: int, data: str, steps: int, result: str) -> None:
    """Time DDP steps with and without the gradient all-reduce on the same batches, and the all-reduces
    themselves (a comm hook); rank 0 writes the times."""
    set_rank_env(rank, world_size, port)
    torch.set_num_threads(1)
    env = DistributedEnv(rank=rank, local_rank=rank, world_size=world_size, local_world_size=world_size)
    dataset = TokenDataset(data, "train")
    with process_group(env, "cpu"):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=dataset.tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=4, n_head=4, n_embd=128))
        network = wrap_networks({"model": model}, torch.device("cpu"))["model"]
        durations: list[float] = []
        network.register_comm_hook(durations, _timed_allreduce_hook)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = [dataset.get_batch(step, GLOBAL_BATCH, BLOCK_SIZE, 0, rank, world_size) for step in range(steps)]

        def timed(sync: bool) -> float:
            torch.distributed.barrier()
            start = time.perf_counter()
            for input_ids, targets in batches:
                with contextlib.nullcontext() if sync else network.no_sync():
                    _, loss = network(input_ids, targets)
                    loss.backward()
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
            torch.distributed.barrier()
            return (time.perf_counter() - start) / steps

        timed(True)  # warm-up: allocator, thread pool, DDP's bucket rebuild after the first step
        with_sync, without_sync, allreduce = [], [], []
        for _ in range(5):  # interleaved, so drift of a shared machine hits both alike
            durations.clear()
            with_sync.append(timed(True))
            allreduce.append(sum(durations) / steps)
            without_sync.append(timed(False))
    if rank == 0:
        times = {"sync": statistics.median(with_sync), "no_sync": statistics.median(without_sync),
                 "allreduce": statistics.median(allreduce)}
        Path(result).write_text(json.dumps(times), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per throughput run")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
        (work / "input.txt").write_text(text, encoding="utf-8")
        data = work / "data"
        prepare_dataset([work / "input.txt"], data, PrepareConfig(tokenizer="char"))

        runs = [(1, 1), (1, 2), (2, 1)]
        speeds = {}
        for processes, threads in runs:
            speeds[processes, threads] = training_tokens_per_s(
                data, work / f"run-{processes}x{threads}", processes=processes, threads=threads, steps=args.steps
            )
            print(f"{processes} process(es) x {threads} thread(s): {speeds[processes, threads]:,.0f} tokens/s", flush=True)

        result = work / "comm.json"
        steps = max(10, args.steps // 3)
        mp.start_processes(_comm_rank, args=(2, free_port(), str(data), steps, str(result)), nprocs=2, start_method="fork")
        times = json.loads(result.read_text(encoding="utf-8"))
    share = times["allreduce"] / times["sync"]
    exposed = max(0.0, (times["sync"] - times["no_sync"]) / times["sync"])
    print(f"step {times['sync'] * 1e3:.1f} ms, all-reduce {times['allreduce'] * 1e3:.1f} ms ({share:.0%}); "
          f"without all-reduce {times['no_sync'] * 1e3:.1f} ms (exposed {exposed:.0%})")

    base = speeds[1, 1]
    table = markdown_table(
        ["processes x threads", "tokens/s", "vs 1 x 1"],
        [[f"{p} x {t}", f"{speeds[p, t]:,.0f}", f"{speeds[p, t] / base:.2f}x"] for p, t in runs],
    )
    n_params = sum(p.numel() for p in GPT(GPTConfig(vocab_size=65, block_size=BLOCK_SIZE, n_layer=4, n_head=4, n_embd=128)).parameters())
    body = f"""## Distributed training scaling (gloo, CPU)

A {n_params / 1e6:.2f} M-parameter GPT (4 layers, 4 heads, 128 dims, block {BLOCK_SIZE}), global batch {GLOBAL_BATCH}
windows of Tiny Shakespeare, {args.steps} steps through `run_training`; 2 processes are DistributedDataParallel
over gloo (what `aigc train --nproc 2` runs). Tokens/s count the global batch (median of logged spans after
the first).

{table}

Communication share of a 2-process step ({n_params * 4 / 2**20:.1f} MiB of fp32 gradients all-reduced per
step; medians of 5 interleaved rounds of {steps} steps): a step takes {times['sync'] * 1e3:.1f} ms, of which
the gradient all-reduces take {times['allreduce'] * 1e3:.1f} ms (**{share:.0%}**, timed by a DDP comm hook
from each bucket's hand-off to its completion; they overlap the rest of the backward pass). The same steps
inside `no_sync` (no all-reduce) take {times['no_sync'] * 1e3:.1f} ms, so {exposed:.0%} of a step is
communication the backward pass does not hide.

Load average of the machine when the run started: {load_before:.1f} for {os.cpu_count()} cores. Two processes
only beat one when each gets a core of its own: on a machine whose cores are busy with other work, the second
process (or thread) competes for the same core and these figures move by tens of percent between runs;
compare rows of one run, not across runs.
"""
    write_section("distributed", body)


if __name__ == "__main__":
    main()
