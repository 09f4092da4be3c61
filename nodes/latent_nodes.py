"""Node: an empty latent of a recommended size, shaped for the connected model."""

from __future__ import annotations

from ..comfy_adapter.latent import empty_latent, latent_spec
from ..resolution.presets import PRESETS, resolve_size, rule_for

SIDE_RANGE, BATCH_RANGE = (64, 16384), (1, 4096)  # the widgets' limits, also checked for API-queued graphs


class EmptyLatentForModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "Decides the latent's channels (4 for SD1.5/SDXL, 16 for SD3, Flux, "
                                               "Anima) and which sizes are allowed."}),
                "preset": (list(PRESETS), {"default": "896x1152 (7:9 portrait)",
                                           "tooltip": "~1 MP sizes the model cards recommend; custom uses width/height."}),
                "width": ("INT", {"default": 1024, "min": SIDE_RANGE[0], "max": SIDE_RANGE[1], "step": 8}),
                "height": ("INT", {"default": 1024, "min": SIDE_RANGE[0], "max": SIDE_RANGE[1], "step": 8}),
                "batch_size": ("INT", {"default": 1, "min": BATCH_RANGE[0], "max": BATCH_RANGE[1]}),
            }
        }

    RETURN_TYPES = ("LATENT", "INT", "INT")
    RETURN_NAMES = ("latent", "width", "height")
    FUNCTION = "generate"
    CATEGORY = "FlowAnime/latent"
    DESCRIPTION = (
        "Empty latent for the connected model: its channel count and layout come from the model, and sizes the "
        "family cannot take (SD3.5: multiples of 64, SDXL: 32) get a clear error."
    )

    def generate(self, model, preset, width, height, batch_size):
        # The editor's validation keeps these in range; a graph queued through the API may not. Width and
        # height count only for the custom preset.
        checked = [("batch_size", batch_size, *BATCH_RANGE)]
        if preset == "custom":
            checked += [("width", width, *SIDE_RANGE), ("height", height, *SIDE_RANGE)]
        for name, value, low, high in checked:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"FlowAnime: '{name}' must be a whole number from {low} to {high}, got {value!r}.")
        spec = latent_spec(model)
        width, height = resolve_size(preset, width, height, rule_for(spec.family, spec.channels, spec.downscale))
        return (empty_latent(spec, width, height, batch_size), width, height)
