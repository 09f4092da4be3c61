"""Node: patch any MODEL to rectified-flow sampling."""

from __future__ import annotations

import logging

from ..comfy_adapter.model_sampling import patch_rectified_flow
from ..model_sampling.flow import (
    RESOLUTION_SHIFT_MODES,
    TIMESTEP_CONVENTIONS,
    VELOCITY_CONVENTIONS,
    require_positive,
)

log = logging.getLogger("FlowAnime")

MULTIPLIER_CHOICES = ("auto", "1000", "1", "custom")


class ModelSamplingRectifiedFlow:
    """ComfyUI's CONST prediction with a shifted discrete-flow sigma table, for any checkpoint family."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model to patch, from a checkpoint, UNET or LoRA loader."}),
                "shift": ("FLOAT", {
                    "default": 3.0, "min": 0.01, "max": 100.0, "step": 0.01,
                    "tooltip": "SD3 time shift s: sigma' = s*t / (1 + (s-1)*t). Higher spends more steps at high "
                               "noise. 3.0 suits SD3.5 and Anima; the nai-v2-fm card asks for 3-4.",
                }),
                "timestep_multiplier": (list(MULTIPLIER_CHOICES), {
                    "default": "auto",
                    "tooltip": "Network time = sigma * multiplier. auto keeps the model family's own (1000 for "
                               "SD1.5/SDXL/SD3, 1 for AuraFlow/Anima/Flux/Cosmos-Predict2); custom uses custom_multiplier.",
                }),
                "custom_multiplier": ("FLOAT", {
                    "default": 1000.0, "min": 0.0, "max": 100000.0, "step": 1.0,
                    "tooltip": "Used only when timestep_multiplier is custom.",
                }),
                "timestep_convention": (list(TIMESTEP_CONVENTIONS), {
                    "default": "sigma",
                    "tooltip": "What the network is fed: sigma*m (SD3, kohya; the usual one) or (1-sigma)*m.",
                }),
                "velocity": (list(VELOCITY_CONVENTIONS), {
                    "default": "noise - data",
                    "tooltip": "What the network predicts: noise - data (SD3, kohya; the usual one) or data - noise.",
                }),
                "resolution_shift": (list(RESOLUTION_SHIFT_MODES), {
                    "default": "off",
                    "tooltip": "off: use shift as given. sd3: shift * sqrt(tokens / base tokens) (SD3 paper). "
                               "flux: ln(shift) linear in tokens at Flux's slope. Needs the latent input.",
                }),
                "base_resolution": ("INT", {
                    "default": 1024, "min": 64, "max": 16384, "step": 8,
                    "tooltip": "The square side (pixels) at which shift applies as given; used by resolution_shift.",
                }),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "The latent you sample; its size sets the resolution-dependent shift."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model, sampling as a rectified flow with this shift: for any sampler or guider.",)
    FUNCTION = "patch"
    CATEGORY = "FlowAnime/model"
    DESCRIPTION = (
        "Make a model trained as a rectified flow sample as one: CONST (velocity) prediction with a shifted sigma "
        "table. Turns an eps-loaded SD1.5/SDXL flow finetune into a flow model; place it before or after LoRA "
        "loaders. Not for eps or v-prediction models."
    )

    def patch(self, model, shift, timestep_multiplier, custom_multiplier, timestep_convention, velocity,
              resolution_shift, base_resolution, latent=None):
        if timestep_multiplier not in MULTIPLIER_CHOICES:
            raise ValueError(f"FlowAnime: 'timestep_multiplier' must be one of {MULTIPLIER_CHOICES}, got {timestep_multiplier!r}.")
        if timestep_multiplier == "custom":
            require_positive("custom_multiplier", custom_multiplier, "Use 1000 for SD1.5/SDXL/SD3 models, 1 for AuraFlow/Anima.")
        multiplier = {"auto": None, "1000": 1000.0, "1": 1.0, "custom": custom_multiplier}[timestep_multiplier]
        patched, schedule = patch_rectified_flow(
            model, shift, multiplier, timestep_convention, velocity, resolution_shift, base_resolution, latent
        )
        log.info("FlowAnime rectified flow: shift %.4g, multiplier %g, timestep %s, velocity %s",
                 schedule.shift, schedule.multiplier, schedule.timestep_convention, schedule.velocity_convention)
        return (patched,)
