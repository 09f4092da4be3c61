"""Benchmark: the booru-prompt normaliser on long prompts of real Danbooru tags, with the bundled tag list.

Prompts are drawn (seeded) from the most used tags of the bundled list, written raw (underscores,
unescaped qualifiers), with some aliases, weights and BREAKs. No ComfyUI needed. Prints the median
of 7 runs per row (wall clock and CPU time); the target for 10,000 tags with alias resolution is under 100 ms.

    python bench/bench_normalizer.py
"""

from __future__ import annotations

import csv
import gzip
import random
import statistics
import sys
import time
import types
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg

from flowanime.prompt.booru import NormalizeOptions, normalize_with_report, preset_options  # noqa: E402
from flowanime.prompt.tags import BUNDLED, load_tag_list  # noqa: E402


def real_prompt(n_tags: int, seed: int = 0) -> str:
    rows = list(csv.reader(gzip.open(BUNDLED, "rt", encoding="utf-8")))[:20000]
    aliases = [a for r in rows for a in r[3].split(",") if a and not a.startswith("/")]
    rng = random.Random(seed)
    pieces = []
    for i in range(n_tags):
        roll = rng.random()
        tag = rng.choice(aliases) if roll < 0.1 else rng.choice(rows)[0]
        pieces.append(f"({tag}:1.2)" if roll > 0.95 else tag)
        if i % 500 == 499:
            pieces.append("BREAK")
    return ", ".join(pieces).replace(", BREAK,", " BREAK")


def median_ms(fn, runs: int = 7) -> tuple[float, float]:
    """Median wall-clock and CPU (process) milliseconds; on a shared machine the CPU time is the cost."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main():
    start = time.perf_counter()
    tags = load_tag_list()
    load_ms = (time.perf_counter() - start) * 1000
    print(f"bundled tag list: {len(tags):,} tags, loaded once per process in {load_ms:.0f} ms (cached after)")
    print(f"{'tags':>7} {'chars':>8}  {'options':<34} {'wall ms':>9} {'cpu ms':>8}")
    cases = [
        ("plain (no tag list)", NormalizeOptions(), None),
        ("alias resolution + report", NormalizeOptions(resolve_aliases=True), tags),
        ("preset nai-v2-fm + aliases", preset_options("nai-v2-fm", NormalizeOptions(resolve_aliases=True)), tags),
    ]
    for n in (100, 1000, 10000):
        prompt = real_prompt(n)
        for label, opts, tag_list in cases:
            wall, cpu = median_ms(lambda: normalize_with_report(prompt, opts, tag_list))
            print(f"{n:>7} {len(prompt):>8}  {label:<34} {wall:>9.1f} {cpu:>8.1f}")


if __name__ == "__main__":
    main()
