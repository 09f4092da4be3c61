"""Benchmark: FlowAnime's BREAK/chunk-aware encoder against ComfyUI's CLIPTextEncode on long prompts.

Both run end to end (tokenize + encode) on ComfyUI's SD1.5 CLIP-L at full size with random weights,
on this machine's CPU. Prints the median of several runs and the overhead of ours.

    python bench/bench_encoder.py            (or: bash scripts/bench.sh is for the samplers)
"""

from __future__ import annotations

import statistics
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_samplers import find_comfyui  # noqa: E402

WORDS = ["long", "silver", "hair", "blue", "eyes", "school", "uniform", "pleated", "skirt", "red", "ribbon"]


def tag_prompt(n_tags):
    return ", ".join(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(2 + i % 3)) for i in range(n_tags))


def median_ms(fn, runs=7):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    comfy_path = find_comfyui()
    if comfy_path is None:
        sys.exit("bench needs a ComfyUI checkout: set COMFYUI_PATH")
    sys.path.insert(0, str(comfy_path))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.sd
    import comfy.sd1_clip
    import utils.extra_config  # noqa: F401  (as main.py, before nodes.py shadows utils)

    from flowanime.comfy_adapter.clip import tokenize

    clip = comfy.sd.CLIP(SimpleNamespace(params={}, clip=comfy.sd1_clip.SD1ClipModel, tokenizer=comfy.sd1_clip.SD1Tokenizer))
    with torch.no_grad():
        for p in clip.cond_stage_model.parameters():
            p.normal_(0, 0.02)

    print("Median of 7 runs, tokenize + encode, CLIP-L at full size (random weights), CPU. Our extra chunks come from")
    print("BREAK and from comma backtracking (a tag is moved whole to the next chunk); each chunk costs one CLIP pass.\n")
    print(f"{'prompt':22} {'chunks (Comfy/ours)':>19} {'CLIPTextEncode ms':>18} {'FlowAnime ms':>13} {'overhead ms':>12} "
          f"{'tokenize ms (Comfy/ours)':>25}")
    for label, text in [
        ("12 tags", tag_prompt(12)),
        ("80 tags", tag_prompt(80)),
        ("80 tags, 3 BREAKs", " BREAK ".join([tag_prompt(20)] * 4)),
        ("400 tags", tag_prompt(400)),
    ]:
        theirs = median_ms(lambda: clip.encode_from_tokens_scheduled(clip.tokenize(text)))
        ours = median_ms(lambda: clip.encode_from_tokens_scheduled(tokenize(clip, text).tokens))
        chunks = f"{len(clip.tokenize(text)['l'])}/{len(tokenize(clip, text).tokens['l'])}"
        tok = f"{median_ms(lambda: clip.tokenize(text)):.2f}/{median_ms(lambda: tokenize(clip, text)):.2f}"
        print(f"{label:22} {chunks:>19} {theirs:18.1f} {ours:13.1f} {ours - theirs:12.1f} {tok:>25}")


if __name__ == "__main__":
    main()
