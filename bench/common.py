"""Shared by the benchmark scripts: machine description, peak memory, and writing figures to docs/benchmarks.md.

Each script owns one section of docs/benchmarks.md, delimited by ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; rewriting a section leaves every other section untouched, so scripts can run
alone or all together (``make bench``).
"""

from __future__ import annotations

import csv
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
SHARED_DATA = Path(os.environ.get("AIGC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
HEADER = "# Benchmarks\n\nFigures written by `make bench` (each section by its own script under `bench/`).\n"


def machine_description() -> str:
    """One line: CPU model, core count, torch threads, Python, torch and OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}"
    )


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(name: str, body: str) -> None:
    """Replace (or append) section ``name`` of docs/benchmarks.md with ``body``, stamped with command and machine."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (
        f"<!-- bench:{name} -->\n{body.rstrip()}\n\n"
        f"*Command:* `{command}` · *machine:* {machine_description()} · *run:* {stamp}\n<!-- /bench:{name} -->"
    )
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_MD.write_text(text, encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def measured_read_bandwidth(nbytes: int, repeats: int = 10) -> float:
    """Bytes/s of summing an fp32 buffer of ``nbytes``, read again and again, with the current torch threads.

    A decode step reads the same weights every step; a buffer of the same size read the same way meets the
    same caches, so this is the speed such a step can hope for (best of runs).
    """
    buffer = torch.ones(max(nbytes // 4, 1))
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return buffer.numel() * 4 / best


def measured_matmul_peak_flops(size: int = 1024, repeats: int = 20) -> float:
    """fp32 FLOP/s of a square matmul on this machine with the current torch threads (best of runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# E2E-style attribute strings for load runs when ../shared/data/e2e is not there.
FALLBACK_PROMPTS = [
    "name[The Eagle], eatType[pub], food[French], area[riverside]",
    "name[Alimentum], food[Chinese], priceRange[cheap], area[city centre]",
    "name[The Mill], eatType[coffee shop], familyFriendly[yes], near[The Sorrento]",
    "name[Blue Spice], food[Italian], customer rating[5 out of 5], area[riverside]",
]


def e2e_dev_prompts() -> list[str]:
    """The distinct attribute strings (``mr``) of the E2E dev set, in order; four fixed ones without the data."""
    devset = SHARED_DATA / "e2e" / "devset.csv"
    if not devset.is_file():
        return FALLBACK_PROMPTS
    with devset.open(encoding="utf-8") as handle:
        prompts = list(dict.fromkeys(row["mr"] for row in csv.DictReader(handle)))
    return prompts or FALLBACK_PROMPTS
