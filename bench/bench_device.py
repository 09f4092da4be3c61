"""Benchmark: what the samplers cost beside the model, on a full-size model on the user's device.

Builds an SD3.5 Medium-shaped MMDiT (depth 24, hidden 1536, self-attention in the first 13 blocks,
RMS q/k norm) with random weights, loads it through ComfyUI's own loader (model detection, the
dtype and device ComfyUI picks), and samples a 1024x1024 latent at CFG 4.5 through
comfy.sample.sample_custom, as SamplerCustomAdvanced does, with ComfyUI's Euler and DPM++ 2M and
with every KSampler entry of the pack, and with Euler reading a value back to the CPU at every step
(as a latent preview does: the CPU then waits for the GPU before it queues the next call). Prints,
per sampler: model calls, wall time, the time per call, the time per call beyond a model call (the
wall time of Euler's calls, which do one multiply-add each beside the model), and the peak memory
beside Euler's. The samplers run round-robin, the fastest of --repeats runs kept.

Random weights are no image model: the adaptive entries would spend their whole budget on them,
so it is capped (--max-calls). The figures that carry over are the ones per call.

    python bench/bench_device.py [--device cuda|cpu] [--size 1024] [--cfg 4.5] [--repeats 3]
        [--euler-steps 30] [--depth 24] [--max-calls 60]

With no CUDA device (or --device cpu) it runs a depth-2 model at 256x256 by default, so the script
itself can be checked anywhere; the figures that matter come from a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
import types
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:  # the pack's cores without ComfyUI's entry point
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg


def find_comfyui():
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "comfy" / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "samplers.py").is_file():
            return Path(candidate)
    return None


def import_comfy(path: Path, cpu: bool):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    from comfy.cli_args import args

    args.cpu = cpu  # before comfy.model_management is imported
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import comfy.sd

    return comfy


def random_mmdit_state(depth: int, size: int, device, seed: int = 0) -> dict:
    """An SD3.5 Medium-shaped MMDiT's weights (hidden 64 x depth, as SD3 scales), drawn on the device:
    fan-in scaled normals, unit norm scales, small biases (O(1) activations through the blocks)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    hidden = 64 * depth
    pos_size = max(384 if depth >= 24 else 64, size // 16)  # SD3.5 Medium's table, or the latent's patches
    with torch.device("meta"):
        shapes = OpenAISignatureMMDITWrapper(
            input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=depth, adm_in_channels=2048,
            context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": hidden}},
            pos_embed_max_size=pos_size, num_patches=pos_size * pos_size, pos_embed_scaling_factor=None,
            x_block_self_attn_layers=list(range(min(13, depth))), qk_norm="rms",
            operations=comfy.ops.disable_weight_init,
        ).state_dict()
    gen = torch.Generator(device=device).manual_seed(seed)
    state = {}
    for name, meta in shapes.items():
        if meta.ndim >= 2:
            value = torch.randn(meta.shape, generator=gen, device=device, dtype=torch.float32)
            value /= math.sqrt(meta[0].numel())
        elif name.endswith("bias"):
            value = torch.randn(meta.shape, generator=gen, device=device, dtype=torch.float32) * 0.02
        else:
            value = torch.ones(meta.shape, device=device)
        state[name] = value.to(torch.bfloat16 if device.type == "cuda" else torch.float32)
    return state


class CallCounter:
    """A unet function wrapper (ComfyUI's model_options hook) that counts batched model calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, apply_model, args):
        self.calls += 1
        return apply_model(args["input"], args["timestep"], **args["c"])


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_back(step, x0, x, total_steps):
    """A callback that reads a value back to the CPU at every step, as a latent preview does."""
    float(x0.abs().max())


def run_sampler(comfy, patcher, sampler, sigmas, noise, latent, positive, negative, cfg, device, callback=None):
    model = patcher.clone()
    counter = CallCounter()
    model.set_model_unet_function_wrapper(counter)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent,
                                     callback=callback, disable_pbar=True, seed=0)
    synchronize(device)
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    if not torch.isfinite(out).all():
        raise RuntimeError("sampling returned non-finite values")
    return counter.calls, wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (1024 on CUDA, 256 on the CPU)")
    parser.add_argument("--depth", type=int, default=None, help="MMDiT depth (24 on CUDA = SD3.5 Medium, 2 on the CPU)")
    parser.add_argument("--cfg", type=float, default=4.5)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sampler (the fastest is shown)")
    parser.add_argument("--euler-steps", type=int, default=30)
    parser.add_argument("--max-calls", type=int, default=60,
                        help="budget of the adaptive entries (random weights would spend their whole 300)")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = args.size or (1024 if device.type == "cuda" else 256)
    depth = args.depth or (24 if device.type == "cuda" else 2)
    if size <= 0 or size % 64:
        sys.exit("--size must be a positive multiple of 64")
    for name in ("depth", "repeats", "euler_steps", "max_calls"):
        value = getattr(args, name)
        if value is not None and value < 1:
            sys.exit(f"--{name.replace('_', '-')} must be at least 1")

    comfy_path = find_comfyui()
    if comfy_path is None:
        sys.exit("bench_device needs a ComfyUI checkout: set COMFYUI_PATH")
    comfy = import_comfy(comfy_path, cpu=device.type == "cpu")
    from flowanime.nodes.sampler_nodes import KSAMPLER_ENTRIES, comfy_sampler_function

    patcher = comfy.sd.load_diffusion_model_state_dict(random_mmdit_state(depth, size, device))
    if patcher is None:
        sys.exit("ComfyUI did not detect the random MMDiT as SD3")
    gen = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 154, 4096, generator=gen) * 0.5, {"pooled_output": torch.randn(1, 2048, generator=gen)}]]
    negative = [[torch.randn(1, 154, 4096, generator=gen) * 0.5, {"pooled_output": torch.randn(1, 2048, generator=gen)}]]
    latent = torch.zeros(1, 16, size // 8, size // 8)
    noise = comfy.sample.prepare_noise(latent, 0)
    model_sampling = patcher.get_model_object("model_sampling")

    def sigmas_for(steps, scheduler="simple"):
        return comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).cpu()

    samplers = [("euler", comfy.samplers.sampler_object("euler"), sigmas_for(args.euler_steps)),
                ("euler+read-back", comfy.samplers.sampler_object("euler"), sigmas_for(args.euler_steps)),
                ("dpmpp_2m", comfy.samplers.sampler_object("dpmpp_2m"), sigmas_for(args.euler_steps))]
    for name, config in KSAMPLER_ENTRIES.items():
        if config.adaptive:
            config = dataclasses.replace(config, max_model_calls=args.max_calls)
        sampler = comfy.samplers.KSAMPLER(comfy_sampler_function(config))
        # Adaptive entries read only the first and last sigma; the fixed-step one steps on these.
        samplers.append((name, sampler, sigmas_for(args.euler_steps, "beta")))

    print(f"ComfyUI {comfy_path}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"model weights {patcher.model.get_dtype()}, computing in "
          f"{getattr(patcher.model, 'manual_cast_dtype', None) or patcher.model.get_dtype()}, "
          f"MMDiT depth {depth} ({type(patcher.model).__name__}), "
          f"{size}x{size}, CFG {args.cfg}, torch {torch.__version__}\n")
    logging.getLogger("FlowAnime").setLevel(logging.ERROR)  # the budget warnings are expected here
    warm_up = samplers[0][0:2] + (sigmas_for(3),)
    run_sampler(comfy, patcher, *warm_up[1:], noise, latent, positive, negative, args.cfg, device)
    # Round-robin over the samplers, the fastest run of each kept: a GPU's clock drifts as it warms,
    # which would otherwise favour whichever sampler ran first.
    runs = {name: [] for name, _, _ in samplers}
    for repeat in range(args.repeats):
        for name, sampler, sigmas in samplers:
            runs[name].append(run_sampler(comfy, patcher, sampler, sigmas, noise, latent, positive, negative,
                                          args.cfg, device, callback=read_back if name.endswith("read-back") else None))
        print(f"  round {repeat + 1} of {args.repeats} done", flush=True)
    rows = [(name, *min(runs[name], key=lambda r: r[1])) for name, _, _ in samplers]

    _, euler_calls, euler_wall, euler_peak = rows[0]
    per_call = euler_wall / euler_calls
    print(f"\n{'sampler':26} {'calls':>6} {'wall s':>8} {'ms/call':>8} {'beyond a call ms':>17} {'% of a call':>12} "
          f"{'peak MiB':>9} {'vs Euler MiB':>13}")
    for name, calls, wall, peak in rows:
        beyond = wall / calls - per_call
        print(f"{name:26} {calls:6d} {wall:8.2f} {1000 * wall / calls:8.2f} {1000 * beyond:17.3f} "
              f"{100 * beyond / per_call:11.2f}% {peak / 2**20:9.0f} {(peak - euler_peak) / 2**20:13.1f}")


if __name__ == "__main__":
    main()
