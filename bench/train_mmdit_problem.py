"""Trains the benchmark's `mmdit-digits` problem: a small network built from ComfyUI's own MMDiT class
(comfy/ldm/modules/diffusionmodules/mmdit.py, the SD3 backbone), trained with the rectified-flow
objective on 16x16 RGB patches of the sample images matplotlib ships, and saved as safetensors
under bench/fixtures/ (committed, so the benchmark never trains unless the file is missing).

    python bench/train_mmdit_problem.py [--steps 1000] [--out bench/fixtures/mmdit_patches.safetensors]

The path is x_sigma = (1 - sigma) x0 + sigma eps. The network is called as ComfyUI calls an SD3
model (ModelType.FLOW, CONST sampling): net(x_sigma, timestep = 1000 sigma) predicts the velocity
v = eps - x0, and the denoiser a KSAMPLER sampler sees is D(x, sigma) = x - sigma * net(x, 1000 sigma).
Unconditional: the MMDiT's joint attention gets learned register tokens as its only context. The
weights reading the timestep embedding's fastest sinusoids stay zero (keep_time_smooth: why there).

CPU, one thread, seeded (a few minutes). Needs ComfyUI (COMFYUI_PATH or ~/comfy/ComfyUI).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = PACK_ROOT / "bench" / "fixtures" / "mmdit_patches.safetensors"
# MMDiT's hidden size is 64 * depth with depth heads; num_blocks joint blocks (the last one's
# context stream is pre-only, as in SD3). About 342k parameters: 1.4 MB in float32.
MODEL_CONFIG = {"input_size": 16, "patch_size": 2, "in_channels": 3, "depth": 1, "num_blocks": 3,
                "mlp_ratio": 2.0, "register_length": 4}
IMAGES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")  # in matplotlib's mpl-data/sample_data
PATCH = 16
TIME_FREQUENCY_LIMIT = 0.01  # radians per timestep: periods of 0.63 sigma and longer


def find_comfyui():
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "comfy" / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "ldm" / "modules" / "diffusionmodules" / "mmdit.py").is_file():
            return Path(candidate)
    sys.exit("training needs a ComfyUI checkout for its MMDiT class: set COMFYUI_PATH")


def build_mmdit(config=MODEL_CONFIG):
    """ComfyUI's MMDiT with ComfyUI's inference layers (comfy.ops.disable_weight_init, as ComfyUI
    builds models before loading weights). Imports ComfyUI."""
    if "comfy" not in sys.modules:  # else the ComfyUI already imported (the test harness's) is the one
        path = str(find_comfyui())
        if path not in sys.path:
            sys.path.insert(0, path)
        from comfy.cli_args import args

        args.cpu = True
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    return MMDiT(**config, operations=comfy.ops.disable_weight_init)


def initialise(model: torch.nn.Module):
    """ComfyUI's inference layers skip initialisation: PyTorch's default init for every linear and
    convolution, then DiT's zero init of the adaLN modulations and the output projection, so the
    untrained network starts as the identity of its residual streams."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(module)
        elif isinstance(module, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(module)
    for name, module in model.named_modules():
        if name.endswith("adaLN_modulation") or name == "final_layer.linear":
            last = module[-1] if isinstance(module, torch.nn.Sequential) else module
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)


def keep_time_smooth(model: torch.nn.Module, keep_below: float = TIME_FREQUENCY_LIMIT):
    """Zero, and keep at zero through training, the weights that read the timestep embedding's
    frequencies above keep_below radians per timestep (of 1000 per unit sigma). MMDiT embeds
    t = 1000 sigma with sinusoids of up to 1 radian per timestep; a network trained for minutes
    (rather than the months a real checkpoint gets) keeps wiggles in sigma at those frequencies
    (measured: periods near 0.006 in sigma, |d2v| above |dv| on that grid), an ODE no sampler can
    take large steps on. Columns j and j + 128 of the first time-MLP layer carry frequency
    10000^(-j/128)."""
    first = model.t_embedder.mlp[0]
    half = first.weight.shape[1] // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    keep = (freqs <= keep_below).to(first.weight.dtype).repeat(2)
    with torch.no_grad():
        first.weight.mul_(keep)
    first.weight.register_hook(lambda grad: grad * keep)
    return int(keep.sum())


def load_patches(seed: int, count: int):
    """count random 16x16 RGB patches of matplotlib's sample images (grace_hopper.jpg at half size,
    the Minduka icon at full size), normalised per channel to mean 0 and std 1 over the set."""
    from matplotlib import cbook
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for name in IMAGES:
        image = Image.open(cbook.get_sample_data(name)).convert("RGB")
        if image.width > 256:
            image = image.resize((image.width // 2, image.height // 2), Image.BICUBIC)
        images.append(np.asarray(image, dtype=np.float32) / 255.0)
    patches = []
    for i in range(count):
        image = images[i % len(images)]
        top = rng.integers(0, image.shape[0] - PATCH + 1)
        left = rng.integers(0, image.shape[1] - PATCH + 1)
        patch = image[top:top + PATCH, left:left + PATCH]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patches.append(patch.transpose(2, 0, 1))
    data = torch.from_numpy(np.ascontiguousarray(np.stack(patches)))
    mean = data.mean(dim=(0, 2, 3), keepdim=True)
    std = data.std(dim=(0, 2, 3), keepdim=True)
    return (data - mean) / std, mean.flatten().tolist(), std.flatten().tolist()


def train(steps: int, batch: int, seed: int, lr: float, log_every: int = 100):
    torch.manual_seed(seed)
    model = build_mmdit()
    initialise(model)
    kept = keep_time_smooth(model)
    print(f"time embedding: {kept} of 256 sinusoids kept (frequencies <= {TIME_FREQUENCY_LIMIT} per timestep)")
    data, mean, std = load_patches(seed, 20000)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start, running = time.perf_counter(), None
    for step in range(steps):
        for group in opt.param_groups:  # warm-up, then cosine decay
            group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        x0 = data[torch.randint(0, data.shape[0], (batch,), generator=gen)]
        eps = torch.randn(x0.shape, generator=gen)
        sigma = torch.sigmoid(torch.randn(batch, generator=gen))  # SD3's logit-normal timesteps
        s = sigma.view(-1, 1, 1, 1)
        x = (1 - s) * x0 + s * eps
        loss = (model(x, sigma * 1000) - (eps - x0)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"step {step + 1:5d}/{steps}  loss {running:.4f}  {time.perf_counter() - start:.0f} s", flush=True)
    return model, {"mean": mean, "std": std, "final_loss": running}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)  # deterministic enough, and kind to a shared machine
    model, stats = train(args.steps, args.batch, args.seed, args.lr)
    from safetensors.torch import save_file

    metadata = {
        "format": "flowanime-bench-mmdit/1",
        "config": json.dumps(MODEL_CONFIG),
        "data": json.dumps({"images": IMAGES, "patch": PATCH, "mean": stats["mean"], "std": stats["std"]}),
        "training": json.dumps({"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                                "time_frequency_limit": TIME_FREQUENCY_LIMIT,
                                "final_loss": stats["final_loss"], "torch": torch.__version__}),
        "call": "D(x, sigma) = x - sigma * net(x, timestep=1000 * sigma)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata=metadata)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, "
          f"{sum(v.numel() for v in state.values())} parameters)")


if __name__ == "__main__":
    main()
