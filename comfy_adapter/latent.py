"""The model's latent format and ComfyUI's empty-latent conventions.

Checked against newer ComfyUI: comfy/latent_formats.py@75399d7 (LatentFormat.spacial_downscale_ratio,
8 by default, 16 for Flux2, 32 for LTXV), nodes.py@02217e3 (EmptyLatentImage returns
{"samples": ..., "downscale_ratio_spacial": 8}), and comfy/sample.py's fix_empty_latent_channels as
comfy_extras/nodes_custom_sampler.py@4be318a calls it (an all-zero latent tagged with a ratio other
than the model's is resized to the model's ratio before sampling). 0.3.64's latent formats carry no
ratio (8 for most; UNDECLARED_DOWNSCALE holds the others, from 75399d7) and its samplers ignore the tag.
"""

from __future__ import annotations

import inspect

from ..resolution.presets import LatentSpec
from .models import require_supported_model

DEFAULT_DOWNSCALE = 8  # LatentFormat's default
DOWNSCALE_TAG = "downscale_ratio_spacial"  # ComfyUI's spelling
# The spatial downscale of formats that ComfyUI 0.3.64 has but does not declare (none of its formats
# carries the attribute), as comfy/latent_formats.py@75399d7 declares them; matched by class name
# along the format's class hierarchy.
UNDECLARED_DOWNSCALE = {
    "LTXV": 32, "HunyuanImage21": 32, "Wan22": 16, "Flux2": 16, "QwenImage21": 16, "HunyuanVideo15": 16,
    "MiniMaxH3Video": 16, "ChromaRadiance": 1,
}
# Latents this node does not make (they are not one image per latent at a fixed downscale): refused
# with a pointer to ComfyUI's own node for them. Formats with latent_dimensions 1 (audio, 3-D shapes)
# are refused too.
NOT_IMAGE_LATENTS = {
    "SC_Prior": "Stable Cascade's stage C latent (compression 42)",
    "SC_B": "Stable Cascade's stage B latent",
    "ACEAudio": "an audio latent",
    "HunyuanImage21Refiner": "the Hunyuan Image 2.1 refiner's packed frames",
    # newer ComfyUI (comfy/latent_formats.py@75399d7 and @9a9a69f): image-shaped by default, not images
    "TripoSplat": "a 3-D Gaussian-splat sequence latent",
    "Trellis2": "a TRELLIS.2 sparse 3-D latent",
    "Trellis2SLAT": "a TRELLIS.2 sparse 3-D latent",
    "MiniMaxH3AV": "a packed audio-video latent",
    "LTXAV": "a packed audio-video latent",
}


def latent_format(model_patcher):
    """The latent format the model samples in, through its object patches (as ComfyUI's samplers read it)."""
    get = getattr(model_patcher, "get_model_object", None)
    if get is not None:
        try:
            return get("latent_format")
        except AttributeError:
            pass
    return model_patcher.model.latent_format


def _class_names(fmt) -> list[str]:
    return [cls.__name__ for cls in type(fmt).__mro__]


def spatial_downscale_ratio(model_patcher) -> int:
    fmt = latent_format(model_patcher)
    if hasattr(fmt, "spacial_downscale_ratio"):
        ratio = fmt.spacial_downscale_ratio
    else:  # ComfyUI 0.3.64
        ratio = next((UNDECLARED_DOWNSCALE[n] for n in _class_names(fmt) if n in UNDECLARED_DOWNSCALE), DEFAULT_DOWNSCALE)
    if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio <= 0:
        raise ValueError(f"FlowAnime: the model's latent format declares a spatial downscale of {ratio!r}; "
                         "this node needs a positive whole number. Use ComfyUI's own empty-latent node for this model.")
    return ratio


def latent_spec(model_patcher) -> LatentSpec:
    """Channels, layout, downscale and family of the connected model's latents."""
    require_supported_model(model_patcher)
    fmt = latent_format(model_patcher)
    what = next((NOT_IMAGE_LATENTS[n] for n in _class_names(fmt) if n in NOT_IMAGE_LATENTS), None)
    if what is None and int(getattr(fmt, "latent_dimensions", 2)) not in (2, 3):
        what = "a one-dimensional latent (audio or a 3-D shape)"
    if what is not None:
        raise ValueError(f"FlowAnime: Empty Latent for Model makes image latents; this model samples {what} "
                         f"({type(fmt).__name__}). Use ComfyUI's own empty-latent node for this model.")
    return LatentSpec(
        family=type(model_patcher.model.model_config).__name__,
        channels=int(fmt.latent_channels),
        dimensions=int(getattr(fmt, "latent_dimensions", 2)),
        downscale=spatial_downscale_ratio(model_patcher),
    )


def empty_latent(spec: LatentSpec, width: int, height: int, batch_size: int) -> dict:
    """A zero latent for width x height pixels, tagged with its downscale as ComfyUI's empty latents are."""
    import comfy.model_management as mm
    import torch

    dtype = mm.intermediate_dtype() if hasattr(mm, "intermediate_dtype") else None  # newer ComfyUI
    samples = torch.zeros(spec.shape(batch_size, width, height), device=mm.intermediate_device(), dtype=dtype)
    return {"samples": samples, DOWNSCALE_TAG: spec.downscale}


def latent_pixel_size(latent: dict, model_patcher) -> tuple[int, int]:
    """The pixel size a latent stands for: its own tag if it has one, else the model's downscale."""
    samples = latent["samples"]
    if samples.ndim < 3 or samples.shape[-1] == 0 or samples.shape[-2] == 0:
        raise ValueError(f"FlowAnime: the 'latent' has no pixels (shape {tuple(samples.shape)}); connect an image "
                         "latent (Empty Latent Image, VAE Encode) to 'latent', or turn 'resolution_shift' off.")
    down = latent.get(DOWNSCALE_TAG) or spatial_downscale_ratio(model_patcher)
    return samples.shape[-1] * down, samples.shape[-2] * down


def samples_as_samplers_prepare_them(model_patcher, latent: dict):
    """latent["samples"] as ComfyUI's samplers prepare it: comfy.sample.fix_empty_latent_channels, given
    the latent's size tags where the running ComfyUI takes them (newer: nodes.py@5aabaf5 and
    comfy_extras/nodes_custom_sampler.py@be91880 pass downscale_ratio_spacial and _temporal, so an
    empty latent tagged with another ratio is resized to the model's; 0.3.64 takes the latent only)."""
    import comfy.sample

    fix = comfy.sample.fix_empty_latent_channels
    try:
        takes_tags = len(inspect.signature(fix).parameters) >= 4
    except (TypeError, ValueError):  # a wrapped function without a signature
        takes_tags = False
    if takes_tags:
        return fix(model_patcher, latent["samples"], latent.get(DOWNSCALE_TAG), latent.get("downscale_ratio_temporal"))
    return fix(model_patcher, latent["samples"])
