"""ComfyUI adapter for the rectified-flow schedule: the only module of model_sampling/ that touches
ComfyUI, and only inside functions, so the pack imports without it."""

from __future__ import annotations

import functools
import logging

from .flow import FlowSchedule, require_positive, resolution_shift

log = logging.getLogger("FlowAnime")

# ComfyUI's latent formats of this era carry no downscale factor; every image family we target
# (SD1.5, SDXL, SD3, Anima's Wan VAE) uses 8.
DEFAULT_DOWNSCALE = 8


@functools.cache
def flow_model_sampling_class():
    """A ModelSamplingDiscreteFlow + CONST subclass driven by a FlowSchedule.

    Subclassing ComfyUI's own classes keeps every isinstance(..., CONST) check in ComfyUI
    (rectified-flow ancestral samplers, CFG rescale, noise scaling) treating the model as flow.
    """
    import comfy.model_sampling as cms
    import torch

    class FlowAnimeModelSampling(cms.ModelSamplingDiscreteFlow, cms.CONST):
        def __init__(self, schedule: FlowSchedule):
            torch.nn.Module.__init__(self)
            self.set_schedule(schedule)

        def set_schedule(self, schedule: FlowSchedule, timesteps: int = 1000):
            self.schedule = schedule
            self.shift = schedule.shift
            self.multiplier = schedule.multiplier
            self.register_buffer("sigmas", schedule.sigma_table(timesteps))

        # Same signature as ComfyUI's, for code that re-parameterises an existing object.
        def set_parameters(self, shift=1.0, timesteps=1000, multiplier=1000):
            s = self.schedule
            self.set_schedule(FlowSchedule(shift, multiplier, s.timestep_convention, s.velocity_convention), timesteps)

        def timestep(self, sigma):
            return self.schedule.network_timestep(sigma)

        def sigma(self, timestep):
            return self.schedule.sigma_from_timestep(timestep)

        def percent_to_sigma(self, percent):
            return self.schedule.percent_to_sigma(percent)

        def calculate_denoised(self, sigma, model_output, model_input):
            sigma = cms.reshape_sigma(sigma, model_output.ndim)
            return self.schedule.denoised(model_input, sigma, model_output)

    return FlowAnimeModelSampling


def family_multiplier(model_patcher) -> float:
    """The network-time multiplier the checkpoint family was built with (not any patch's)."""
    import comfy.model_base

    base = model_patcher.model
    settings = getattr(base.model_config, "sampling_settings", None) or {}
    if "multiplier" in settings:
        return float(settings["multiplier"])
    if getattr(base, "model_type", None) == comfy.model_base.ModelType.FLUX:
        return 1.0  # ModelSamplingFlux feeds sigma itself
    return 1000.0  # SD1.x/SDXL discrete timesteps and SD3 MMDiTs


def latent_pixel_size(latent: dict, model_patcher) -> tuple[int, int]:
    samples = latent["samples"]
    fmt = getattr(model_patcher.model, "latent_format", None)
    down = getattr(fmt, "spacial_downscale_ratio", DEFAULT_DOWNSCALE)
    return samples.shape[-1] * down, samples.shape[-2] * down


def patch_rectified_flow(
    model_patcher,
    shift: float,
    multiplier: float | None = None,
    timestep_convention: str = "sigma",
    velocity_convention: str = "noise - data",
    resolution_mode: str = "off",
    base_resolution: int = 1024,
    latent: dict | None = None,
):
    """Return a clone of model_patcher whose model_sampling is rectified flow. multiplier None keeps
    the family's own. Returns (patched model, FlowSchedule used)."""
    require_positive("shift", shift, "Typical values: 3.0 for SD3.5 and Anima, 3-4 for SD1.5 flow finetunes.")
    if multiplier is None:
        multiplier = family_multiplier(model_patcher)
    if resolution_mode != "off":
        if latent is None:
            raise ValueError(
                "FlowAnime: 'resolution_shift' needs the latent you sample: connect it to the 'latent' input, "
                "or set 'resolution_shift' to off."
            )
        require_positive("base_resolution", base_resolution, "Use the resolution the shift was tuned at, e.g. 1024.")
        width, height = latent_pixel_size(latent, model_patcher)
        shift = resolution_shift(resolution_mode, shift, base_resolution, width, height)
    schedule = FlowSchedule(shift, multiplier, timestep_convention, velocity_convention)
    patched = model_patcher.clone()
    patched.add_object_patch("model_sampling", flow_model_sampling_class()(schedule))
    return patched, schedule
