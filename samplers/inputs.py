"""What a solve takes in, checked in one place before the first model call (as torchdiffeq's
_check_inputs does): the latent per image, the sigma schedule, the conditioning, and the tolerances
the latent's dtype can resolve. Plain torch, no ComfyUI.

A bad input found here gets an error naming that input (and the images it spoils), instead of
surfacing later as "the model returned NaN".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from .ode import AdaptiveSettings, SolverError, bad_images, describe_images

# Far above any model's noise range (flow models 1, SD 14.6, zero-terminal-SNR v-pred about 4,500),
# and low enough that x = sigma * noise and its squares (error norms) stay finite in float32.
MAX_SIGMA = 1e5
# The smallest tolerance a solve honours, in units of the state dtype's machine epsilon: an RK error
# estimate is a difference of a few stage sums, each rounded, so below about 100 eps the estimate is
# rounding noise and the controller only shrinks the step (float32: 1.2e-5, log10 -4.9).
TOLERANCE_FLOOR_EPS = 100


class SamplerInputError(SolverError, ValueError):
    """A bad input to the sampler; the message names it."""


def _fmt(value: float) -> str:
    return f"{value:g}"


def check_sigmas(sigmas: Sequence[float], adaptive: bool) -> None:
    """Finite, not negative, not huge, 0 only at the end; an adaptive solve also needs one direction
    (it integrates from the first sigma to the last)."""
    where = "Check the scheduler or the custom sigmas feeding the sampler."
    for i, s in enumerate(sigmas):
        if not math.isfinite(s) or s < 0 or s > MAX_SIGMA:
            why = ("not a number" if math.isnan(s) else "infinite" if math.isinf(s)
                   else "negative" if s < 0 else f"above {_fmt(MAX_SIGMA)}, far beyond any model's noise range")
            raise SamplerInputError(f"FlowAnime: the sigmas are unusable: sigmas[{i}] is {_fmt(s)} ({why}). {where}")
    for i in range(len(sigmas) - 1):
        if sigmas[i] == 0 and sigmas[i + 1] > 0:
            raise SamplerInputError(
                f"FlowAnime: the sigmas are unusable: sigmas[{i}] is 0 and a larger sigma follows: sigma 0 can only "
                "end a schedule (the ODE is singular there; to invert an image, start a rising schedule above 0, "
                f"as ComfyUI's FlipSigmas does). {where}"
            )
    if adaptive:
        steps = [b - a for a, b in zip(sigmas, sigmas[1:]) if b != a]
        turn = next((i for i in range(1, len(steps)) if (steps[i] > 0) != (steps[0] > 0)), None)
        if turn is not None:
            raise SamplerInputError(
                "FlowAnime: adaptive methods integrate from the first sigma to the last and need sigmas that only "
                "fall (sampling) or only rise (inversion); these change direction. Use a fixed-step method, which "
                "follows every sigma: a ComfyUI sampler such as euler, or euler, heun, midpoint, ralston3 or rk4 on "
                "the Runge-Kutta ODE Sampler node."
            )


def check_latent(x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise SamplerInputError(f"FlowAnime: the latent has dtype {x.dtype}; a latent must hold floating-point values.")
    bad = bad_images(x)
    if bad:
        raise SamplerInputError(
            f"FlowAnime: the input latent has NaN or inf values in {describe_images(bad, x.shape[0])} (before any "
            "model call, so not the model's doing). Check the node that made the latent (a VAE Encode in fp16 can "
            "overflow: try the VAE in fp32/bf16; a sampler before this one given SIGMAS of a single value, as "
            "SplitSigmas at step 0 makes, returns inf for a flow model), or leave those images out with Latent "
            "From Batch."
        )


def check_conditioning(conditioning: dict[str, Sequence[torch.Tensor]]) -> None:
    """Every tensor of every prompt (positive, negative, ...) must be finite."""
    for name, tensors in conditioning.items():
        for tensor in tensors:
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise SamplerInputError(
                    f"FlowAnime: the {name} conditioning has NaN or inf values, so every image would be NaN. The "
                    f"usual cause is a prompt weight too large to represent, such as (tag:1e308), or many nested "
                    f"brackets: lower the weights in the {name} prompt (1.5 is already strong)."
                )


def solve_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the ODE state is integrated in: float16/bfloat16 latents are solved in float32 (their
    8-11 bit mantissas cannot carry the step arithmetic, and x/sigma overflows float16 near sigma 0)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def resolvable_tolerances(settings: AdaptiveSettings, dtype: torch.dtype) -> tuple[AdaptiveSettings, str | None]:
    """Clamp rtol/atol to what the state dtype resolves. Returns (settings, log line or None)."""
    floor = TOLERANCE_FLOOR_EPS * torch.finfo(dtype).eps
    if settings.rtol >= floor and settings.atol >= floor:
        return settings, None
    clamped = replace(settings, rtol=max(settings.rtol, floor), atol=max(settings.atol, floor))
    dtype_name = str(dtype).removeprefix("torch.")
    return clamped, (
        f"FlowAnime: log10_rtol {math.log10(settings.rtol):.3g} / log10_atol {math.log10(settings.atol):.3g} are below "
        f"what {dtype_name} latents resolve; using {math.log10(clamped.rtol):.3g} / {math.log10(clamped.atol):.3g} "
        "(tighter settings would only spend model calls on rounding noise)."
    )
