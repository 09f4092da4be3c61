"""How close two model calls can get to the reference, for any sampler that spends its first call at
sigma 1 (on every ComfyUI scheduler but ddim_uniform, a flow model's schedule starts there).

A two-call sampler of the kinds in the benchmark (Euler/DDIM, Runge-Kutta, multistep, exponential
integrators) calls the model at x_1 = noise, sigma 1, then at one point built from what it has,
x_s = s noise + b (1 - s) D(noise, 1), and returns a linear combination of noise, D(noise, 1) and
D(x_s, s). The noise in x_s is at the level the model is told, s, as every consistent step puts it
(those samplers all take b = 1, DDIM's point; the scan tries other b too). This script scans s and b
on a grid and, at each point, fits that combination per image to the reference by least squares: no
sampler can choose its coefficients better, so the best of these is a floor for every such sampler
on the grid. Beside it: the best fixed combination (one set of coefficients for all images, fitted
on them), the best DDIM schedule [1, s, 0], the best DDIM schedule that starts below sigma 1 on an
empty latent, [s1, s2, 0], which skips the call at sigma 1 by taking the image's mean to be zero,
and how each problem's best such schedule does on the others.

    python bench/two_call_floor.py [--problems NAME ...] [--gmm SPEC ...] [--batch 4]

An exact model's prediction at sigma 1 is the mean image whatever the noise, so the first call says
nothing about the draw; where the draws pick their component near sigma 1 (narrow mixtures), one
informative call is too few for the loose levels.
"""

from __future__ import annotations

import argparse
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:  # the pack's cores without ComfyUI's entry point
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg

from flowanime.bench import problems as bench_problems  # noqa: E402
from flowanime.bench.gmm import rms_error  # noqa: E402

SECOND_CALL_SIGMAS = (0.98, 0.95, 0.92, 0.9, 0.88, 0.86, 0.84, 0.82, 0.8, 0.78, 0.76, 0.74, 0.72, 0.7, 0.65, 0.6,
                      0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02)
MEAN_WEIGHTS = (-0.5, -0.25, 0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0)  # b; 1 is DDIM's
FIRST_CALL_SIGMAS_BELOW_ONE = (0.98, 0.95, 0.92, 0.9, 0.85, 0.8)


@dataclass
class TwoCallFloor:
    floor: float  # coefficients fitted per image
    floor_at: tuple  # (s, b)
    fixed: float  # one set of coefficients for all images
    fixed_at: tuple
    fixed_coefficients: tuple  # on noise, D(noise, 1), D(x_s, s)
    ddim: float  # the schedule [1, s, 0]
    ddim_at: float


def _fit_per_image(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """features [B, d, k], target [B, d]: each image's least-squares combination of its k features."""
    gram = features.transpose(1, 2) @ features
    rhs = features.transpose(1, 2) @ target.unsqueeze(-1)
    return (features @ torch.linalg.lstsq(gram, rhs).solution).squeeze(-1)


def _fit_shared(features: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One least-squares combination for every image: (the fitted images, the k coefficients)."""
    flat = features.reshape(-1, features.shape[-1])
    coefficients = torch.linalg.lstsq(flat.T @ flat, flat.T @ target.reshape(-1, 1)).solution
    return (flat @ coefficients).reshape(target.shape), coefficients.flatten()


@torch.no_grad()
def two_call_floor(denoise, noise: torch.Tensor, reference: torch.Tensor, sigmas=SECOND_CALL_SIGMAS,
                   mean_weights=MEAN_WEIGHTS) -> TwoCallFloor:
    """Scan the second call's point over the grid (denoise in float64 on float64 inputs)."""
    eps = noise.double()
    target = reference.double().flatten(1)
    first = denoise(eps, 1.0)
    best = {"floor": (float("inf"), None), "fixed": (float("inf"), None, None), "ddim": (float("inf"), None)}
    for s in sigmas:
        for weight in mean_weights:
            x_s = s * eps + weight * (1 - s) * first
            second = denoise(x_s, s)
            features = torch.stack([eps.flatten(1), first.flatten(1), second.flatten(1)], -1)
            error = rms_error(_fit_per_image(features, target), target)
            if error < best["floor"][0]:
                best["floor"] = (error, (s, weight))
            fitted, coefficients = _fit_shared(features, target)
            error = rms_error(fitted, target)
            if error < best["fixed"][0]:
                best["fixed"] = (error, (s, weight), tuple(round(float(c), 3) for c in coefficients))
            if weight == 1.0:  # DDIM: x_s = s noise + (1 - s) D(noise, 1), then D(x_s, s)
                error = rms_error(second.flatten(1), target)
                if error < best["ddim"][0]:
                    best["ddim"] = (error, s)
    return TwoCallFloor(*best["floor"], *best["fixed"], *best["ddim"])


@torch.no_grad()
def ddim_below_one(denoise, noise: torch.Tensor, reference: torch.Tensor, starts=FIRST_CALL_SIGMAS_BELOW_ONE,
                   seconds=SECOND_CALL_SIGMAS) -> tuple[float, tuple]:
    """The best DDIM schedule [s1, s2, 0] on an empty latent (x = s1 noise, as ComfyUI starts a schedule
    below 1): (its error, (s1, s2))."""
    eps = noise.double()
    target = reference.double().flatten(1)
    best = (float("inf"), None)
    for s1 in starts:
        x1 = s1 * eps
        first = denoise(x1, s1)
        for s2 in (s for s in seconds if s < s1):
            x2 = (s2 / s1) * x1 + (1 - s2 / s1) * first
            error = rms_error(denoise(x2, s2).flatten(1), target)
            if error < best[0]:
                best = (error, (s1, s2))
    return best


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    bench_problems.add_problem_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="small mixtures, references at 1e-7")
    parser.add_argument("--out", type=Path, default=PACK_ROOT / "bench" / "out",
                        help="its cache/ keeps the references, shared with bench_samplers.py's --out")
    args = parser.parse_args()
    bench_problems.check_problem_arguments(parser, args)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    problems = bench_problems.build(bench_problems.problem_names(args), smoke=args.smoke, cache_dir=args.out / "cache", gmm_specs=args.gmm)
    print("\nTwo model calls per image: RMS error against the reference (x_s = s noise + b (1 - s) D(noise, 1))\n")
    print("| problem | floor, first call at σ 1 (any coefficients per image) | best fixed two-call method from σ 1 "
          "| DDIM [1, s, 0] | DDIM [s1, s2, 0] from an empty latent |")
    print("|---|---|---|---|---|")
    best_below, draws = {}, {}
    for problem in problems:
        noise = problem.noise(args.batch)
        reference = problem.reference(noise)
        draws[problem.name] = noise, reference
        result = two_call_floor(problem.denoise64, noise, reference)
        below, (s1, s2) = best_below[problem.name] = ddim_below_one(problem.denoise64, noise, reference)
        s, b = result.floor_at
        fs, fb = result.fixed_at
        print(f"| {problem.name} | {result.floor:.3g} (s {s:g}, b {b:g}) "
              f"| {result.fixed:.3g} (s {fs:g}, b {fb:g}; coefficients {result.fixed_coefficients}) "
              f"| {result.ddim:.3g} (s {result.ddim_at:g}) | {below:.3g} ({s1:g}, {s2:g}) |", flush=True)
    if len(problems) > 1:  # does a problem's best two-call schedule carry over to the others?
        print("\nEach problem's best DDIM schedule [s1, s2, 0] from an empty latent (rows) on every problem (columns):\n")
        print("| schedule | " + " | ".join(p.name for p in problems) + " |")
        print("|---|" + "---|" * len(problems))
        for name, (_, (s1, s2)) in best_below.items():
            errors = [ddim_below_one(p.denoise64, *draws[p.name], (s1,), (s2,))[0] for p in problems]
            print(f"| {name}'s [{s1:g}, {s2:g}, 0] | " + " | ".join(f"{e:.3g}" for e in errors) + " |", flush=True)


if __name__ == "__main__":
    main()
