"""Rectified-flow sampling math: pure torch, no ComfyUI.

The path is x(sigma) = (1 - sigma) * data + sigma * noise with sigma in [0, 1]; the network predicts
a velocity along it. Everything here works on Python floats and on tensors alike.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

log = logging.getLogger("FlowAnime")

# Combo values are saved in users' workflows: never rename one, only add.
TIMESTEP_CONVENTIONS = ("sigma", "1 - sigma")
VELOCITY_CONVENTIONS = ("noise - data", "data - noise")
RESOLUTION_SHIFT_MODES = ("off", "sd3", "flux")

# Flux's dynamic shift: mu = ln(shift) rises linearly from 0.5 at 256 image tokens to 1.15 at 4096.
FLUX_BASE_TOKENS, FLUX_MAX_TOKENS = 256, 4096
FLUX_BASE_MU, FLUX_MAX_MU = 0.5, 1.15
# One image token is a 16x16-pixel patch (8x VAE, 2x2 patchify), as in ComfyUI's ModelSamplingFlux.
PIXELS_PER_TOKEN = 16 * 16
# Bounds on a resolution-dependent shift. Within them the float32 table of 1000 sigmas stays strictly
# increasing (at shift 1000 its top entries still differ by ~1e-6, 17 float32 steps); beyond them
# Flux's exponential rule gave an all-1 (8192 px at base 1024) or all-NaN table (overflow).
MIN_SHIFT, MAX_SHIFT = 1e-3, 1e3


def time_shift(shift: float, t):
    """SD3's time shift: sigma' = s*t / (1 + (s-1)*t) (SD3 paper eq. 23; ComfyUI time_snr_shift)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def require_positive(name: str, value: float, advice: str) -> float:
    """Reject values the math cannot take, naming the widget the user has to change."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"FlowAnime: '{name}' must be a finite number above 0, got {value!r}. {advice}")
    return float(value)


def image_tokens(width_px: float, height_px: float) -> float:
    """Image size in Flux/SD3 DiT tokens (16x16-pixel patches)."""
    return width_px * height_px / PIXELS_PER_TOKEN


def _shift_from_log(log_shift: float) -> float:
    """exp(log_shift) clamped to [MIN_SHIFT, MAX_SHIFT], in log space so it cannot overflow."""
    if log_shift >= math.log(MAX_SHIFT):
        return MAX_SHIFT
    return MIN_SHIFT if log_shift <= math.log(MIN_SHIFT) else math.exp(log_shift)


def sd3_resolution_shift(base_shift: float, tokens: float, base_tokens: float) -> float:
    """SD3 paper section 5.3.2: scale the shift by sqrt(m/n) for m tokens against a base of n."""
    shift = base_shift * math.sqrt(tokens / base_tokens)
    return shift if MIN_SHIFT <= shift <= MAX_SHIFT else _shift_from_log(math.log(shift))


def flux_resolution_shift(base_shift: float, tokens: float, base_tokens: float) -> float:
    """Flux's rule: ln(shift) moves linearly with the token count at Flux's slope, anchored so that
    base_tokens gives base_shift. With base_shift e^1.15 at 4096 tokens this is Flux exactly."""
    slope = (FLUX_MAX_MU - FLUX_BASE_MU) / (FLUX_MAX_TOKENS - FLUX_BASE_TOKENS)
    log_shift = math.log(base_shift) + slope * (tokens - base_tokens)
    if math.log(MIN_SHIFT) <= log_shift <= math.log(MAX_SHIFT):
        return base_shift * math.exp(slope * (tokens - base_tokens))  # as before: exact at the anchor
    return _shift_from_log(log_shift)


def resolution_shift(mode: str, base_shift: float, base_resolution: int, width_px: float, height_px: float) -> float:
    """The shift to use for an image of width_px x height_px, given base_shift at base_resolution^2."""
    if mode == "off":
        return base_shift
    tokens = image_tokens(width_px, height_px)
    base_tokens = image_tokens(base_resolution, base_resolution)
    if mode == "sd3":
        shift = sd3_resolution_shift(base_shift, tokens, base_tokens)
    elif mode == "flux":
        shift = flux_resolution_shift(base_shift, tokens, base_tokens)
    else:
        raise ValueError(f"FlowAnime: 'resolution_shift' must be one of {RESOLUTION_SHIFT_MODES}, got {mode!r}.")
    if shift in (MIN_SHIFT, MAX_SHIFT):
        log.warning(
            "FlowAnime: resolution_shift %s for %gx%g px at base_resolution %d asks for a shift beyond %g..%g; "
            "using %g. Set base_resolution nearer the image size, or resolution_shift to off.",
            mode, width_px, height_px, base_resolution, MIN_SHIFT, MAX_SHIFT, shift)
    return shift


def check_sigma_table(table: torch.Tensor, shift: float) -> torch.Tensor:
    """A sigma table the schedulers can use: finite, inside (0, 1], strictly increasing. Anything else
    (a shift too extreme for float32) would surface later as a NaN image or an internal error."""
    problem = None
    if not bool(torch.isfinite(table).all()):
        problem = "is not finite"
    elif not (float(table.min()) > 0 and float(table.max()) <= 1.001):  # float32 s/(1+(s-1)) is ~1 +- 1e-4 at small s
        problem = "does not lie inside (0, 1]"
    elif not bool((table[1:] > table[:-1]).all()):
        problem = "is not strictly increasing (neighbouring sigmas are equal in float32)"
    if problem is not None:
        raise ValueError(
            f"FlowAnime: the sigma table for shift {shift:g} {problem}. Use a 'shift' between {MIN_SHIFT:g} and "
            f"{MAX_SHIFT:g} (typical: 3); with 'resolution_shift', set 'base_resolution' nearer the image size."
        )
    return table


@dataclass(frozen=True)
class FlowSchedule:
    """A rectified-flow model's sampling parameters.

    shift: SD3 time shift applied to the sigma table.
    multiplier: network time = sigma * multiplier (1000 for SD-family UNets and MMDiTs, 1 for
        AuraFlow/Anima-style models).
    timestep_convention: what the network is fed: "sigma" -> sigma*m (SD3, kohya), or "1 - sigma"
        -> (1-sigma)*m (finetunes that count time from the data end).
    velocity_convention: what the network predicts: "noise - data" (SD3, kohya) or "data - noise".
    """

    shift: float = 3.0
    multiplier: float = 1000.0
    timestep_convention: str = "sigma"
    velocity_convention: str = "noise - data"

    def __post_init__(self):
        require_positive("shift", self.shift, "Typical values: 3.0 for SD3.5 and Anima, 3-4 for SD1.5 flow finetunes.")
        require_positive("multiplier", self.multiplier, "Use 1000 for SD1.5/SDXL/SD3 models, 1 for AuraFlow/Anima.")
        if self.timestep_convention not in TIMESTEP_CONVENTIONS:
            raise ValueError(
                f"FlowAnime: 'timestep_convention' must be one of {TIMESTEP_CONVENTIONS}, got {self.timestep_convention!r}."
            )
        if self.velocity_convention not in VELOCITY_CONVENTIONS:
            raise ValueError(
                f"FlowAnime: 'velocity' must be one of {VELOCITY_CONVENTIONS}, got {self.velocity_convention!r}."
            )

    def sigma_table(self, steps: int = 1000) -> torch.Tensor:
        """Ascending sigmas at t = 1/steps .. 1, shifted: the table ComfyUI's schedulers read.

        Computed in float32 through the same operations as ComfyUI's ModelSamplingDiscreteFlow, so
        a graph gets bit-identical sigmas (and images) to one using ModelSamplingSD3/AuraFlow.
        """
        timesteps = (torch.arange(1, steps + 1, 1) / steps) * self.multiplier
        return check_sigma_table(time_shift(self.shift, timesteps / self.multiplier), self.shift)

    def network_timestep(self, sigma):
        """The time value the network receives for a given sigma."""
        if self.timestep_convention == "sigma":
            return sigma * self.multiplier
        return (1.0 - sigma) * self.multiplier

    def sigma_from_timestep(self, timestep):
        """Map a network timestep back to a shifted sigma.

        Like ComfyUI's ModelSamplingDiscreteFlow.sigma, this applies the shift to the time the
        timestep stands for, so it is not the inverse of network_timestep when shift != 1. The
        "normal" and "sgm_uniform" schedulers rely on that to space their steps in shifted time.
        """
        u = timestep / self.multiplier
        if self.timestep_convention == "1 - sigma":
            u = 1.0 - u
        return time_shift(self.shift, u)

    def percent_to_sigma(self, percent: float) -> float:
        """Sampling progress (0 = start, 1 = end) to sigma, as ComfyUI's flow sampling does, in float32
        as newer ComfyUI computes it (comfy/model_sampling.py@38a99a8): a step range's bound then equals
        the float32 sigma the sigma table holds for that time, and a range check on a step at the
        bound does not flip on rounding."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        timestep = torch.tensor((1.0 - percent) * self.multiplier, dtype=torch.float32)
        return time_shift(self.shift, timestep / self.multiplier).item()

    def denoised(self, x, sigma, velocity):
        """The data prediction: x - sigma*v for v = noise - data, x + sigma*v for v = data - noise."""
        if self.velocity_convention == "noise - data":
            return x - velocity * sigma
        return x + velocity * sigma
