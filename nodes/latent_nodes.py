"""Node: an empty latent of a recommended size, shaped for the connected model."""

from __future__ import annotations

import math
import numbers

from ..comfy_adapter.latent import empty_latent, latent_spec
from ..resolution.presets import PRESETS, resolve_size, rule_for

SIDE_RANGE, BATCH_RANGE = (64, 16384), (1, 4096)  # the widgets' limits, also checked for API-queued graphs
DEFAULT_PRESET = "896x1152 (7:9 portrait)"


def _is_whole(value) -> bool:
    """An int, or a value a linked node may send for one (numpy's integers, 1024.0); not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()


class EmptyLatentForModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "Decides the latent's channels (4 for SD1.5/SDXL, 16 for SD3, Flux, "
                                               "Anima) and which sizes are allowed."}),
                "preset": (list(PRESETS), {"default": DEFAULT_PRESET,
                                           "tooltip": "Sizes the model cards recommend (about 1 MP; 768x1024 for "
                                                      "nai-v2-fm; 512x768, a common SD1.5 size); custom uses width and height."}),
                "width": ("INT", {"default": PRESETS[DEFAULT_PRESET][0], "min": SIDE_RANGE[0], "max": SIDE_RANGE[1],
                                  "step": 8, "tooltip": "Used only when preset is custom."}),
                "height": ("INT", {"default": PRESETS[DEFAULT_PRESET][1], "min": SIDE_RANGE[0], "max": SIDE_RANGE[1],
                                   "step": 8, "tooltip": "Used only when preset is custom."}),
                "batch_size": ("INT", {"default": 1, "min": BATCH_RANGE[0], "max": BATCH_RANGE[1],
                                       "tooltip": "Images sampled together."}),
            }
        }

    RETURN_TYPES = ("LATENT", "INT", "INT")
    RETURN_NAMES = ("latent", "width", "height")
    OUTPUT_TOOLTIPS = (
        "The empty latent, for a sampler's latent_image input.",
        "The image's width in pixels (the preset's, or width for custom), for nodes that ask for it.",
        "The image's height in pixels (the preset's, or height for custom), for nodes that ask for it.",
    )
    FUNCTION = "generate"
    CATEGORY = "FlowAnime/latent"
    DESCRIPTION = (
        "Empty latent for the connected model: its channel count and layout come from the model. Sizes the model "
        "cannot take (SD3.5 and other DiTs: sides not a multiple of 16; SD1.5, SDXL: 8) get a clear error; sizes off "
        "the card's grid (SD3.5: 64, SDXL: 32) work, with a warning in the console."
    )

    def generate(self, model, preset, width, height, batch_size):
        # The editor's validation keeps these in range; a graph queued through the API may not. Width and
        # height count only for the custom preset.
        checked = [("batch_size", batch_size, *BATCH_RANGE)]
        if preset == "custom":
            checked += [("width", width, *SIDE_RANGE), ("height", height, *SIDE_RANGE)]
        for name, value, low, high in checked:
            if not (_is_whole(value) and low <= value <= high):
                raise ValueError(f"FlowAnime: '{name}' must be a whole number from {low} to {high}, got {value!r}.")
        width, height, batch_size = (int(v) if _is_whole(v) else v for v in (width, height, batch_size))
        spec = latent_spec(model)
        width, height = resolve_size(preset, width, height, rule_for(spec.family, spec.channels, spec.downscale))
        return (empty_latent(spec, width, height, batch_size), width, height)
