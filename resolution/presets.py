"""Image sizes the model cards recommend, and the side multiples each model family needs (plain Python)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger("FlowAnime")

# Combo values are saved in workflows: never rename one, only add.
PRESETS = {
    "1024x1024 (1:1)": (1024, 1024),
    "896x1152 (7:9 portrait)": (896, 1152),
    "832x1216 (13:19 portrait)": (832, 1216),
    "768x1344 (4:7 portrait)": (768, 1344),
    "640x1536 (5:12 portrait)": (640, 1536),
    "1152x896 (9:7 landscape)": (1152, 896),
    "1216x832 (19:13 landscape)": (1216, 832),
    "1344x768 (7:4 landscape)": (1344, 768),
    "1536x640 (12:5 landscape)": (1536, 640),
    "768x1024 (3:4, nai-v2-fm)": (768, 1024),
    "512x768 (2:3, SD1.5)": (512, 768),
    "custom": None,
}


@dataclass(frozen=True)
class FamilyRule:
    name: str
    multiple: int  # both sides must be multiples of this (pixels): what the model needs
    why: str
    recommended: int = 0  # the model card's grid, when coarser: other sides work, with a warning
    recommended_why: str = ""


# What each family needs: SD1.5 and SDXL 8 (the VAE), SD3 and other patch-2 DiTs (Flux, Anima) 16
# (2x2 patches of an 8x latent; ComfyUI's EmptySD3LatentImage steps by 16). PixArt's DiT reads SD
# latents (4 channels, so not caught by the 16-channel DiT rule) and, unlike the others, sizes its
# position table to the unpadded latent: a side of 8 but not 16 stops inside the model. What the cards recommend
# on top: SD3.5 Medium and Nekofantasia sides that are multiples of 64, SDXL buckets (RouWei,
# Illustrious) multiples of 32. Those models pad other sizes and still make an image, so a side off
# the card's grid is a warning, not an error.
RULES = {
    "SD3": FamilyRule("SD3.5", 16, "its MMDiT takes 2x2 patches of an 8x latent",
                      64, "SD3.5 models (Nekofantasia's card) are trained on sides that are multiples of 64"),
    "SDXL": FamilyRule("SDXL", 8, "the VAE downsamples by 8",
                       32, "SDXL models (RouWei's card) are trained on buckets whose sides are multiples of 32"),
    "SD15": FamilyRule("SD1.5", 8, "the VAE downsamples by 8"),
    "PixArt": FamilyRule("PixArt", 16, "its DiT takes 2x2 patches of an 8x latent and does not pad them"),
}
PATCHED_DIT = FamilyRule("DiT", 16, "a 2x2-patch DiT over an 8x VAE needs multiples of 16")
DEFAULT = FamilyRule("this model", 8, "the VAE downsamples by 8")
PIXEL_SPACE = FamilyRule("this model", 8, "ComfyUI's empty latents keep sides to multiples of 8")


def rule_for(model_config_name: str, latent_channels: int, downscale: int = 8) -> FamilyRule:
    """The side multiple for a family whose VAE downsamples by `downscale` (8 for every family above;
    16 or 32 for some newer latent formats, 1 in pixel space): at least the downscale, so the latent
    is never cut."""
    rule = next((r for prefix, r in RULES.items() if model_config_name.startswith(prefix)), None)
    if rule is None:
        rule = PATCHED_DIT if latent_channels == 16 and downscale == 8 else PIXEL_SPACE if downscale == 1 else DEFAULT
    multiple = math.lcm(rule.multiple, downscale)
    if multiple == rule.multiple:
        return rule
    recommended = math.lcm(rule.recommended, multiple) if rule.recommended else 0
    return FamilyRule(rule.name, multiple, f"its VAE downsamples by {downscale}", recommended, rule.recommended_why)


@dataclass(frozen=True)
class LatentSpec:
    """What an empty latent for a model looks like: channels, 2 (image) or 3 (video-style, one frame)
    latent dimensions, and the VAE's spatial downscale."""

    family: str
    channels: int
    dimensions: int = 2
    downscale: int = 8

    def shape(self, batch_size: int, width: int, height: int) -> list[int]:
        spatial = [height // self.downscale, width // self.downscale]
        return [batch_size, self.channels] + ([1] if self.dimensions == 3 else []) + spatial


def resolve_size(preset: str, width: int, height: int, rule: FamilyRule, warn=log.warning) -> tuple[int, int]:
    """The preset's size (or width x height for custom), checked against the family's multiple; a side
    off the card's coarser grid is reported through `warn` and kept."""
    if preset not in PRESETS:
        raise ValueError(f"FlowAnime: 'preset' must be one of {list(PRESETS)}, got {preset!r}.")
    size = PRESETS[preset] or (int(width), int(height))
    custom = PRESETS[preset] is None
    for name, value in zip(("width", "height"), size):
        if value <= 0 or value % rule.multiple:
            source = f"'{name}'" if custom else f"preset {preset!r}"
            raise ValueError(f"FlowAnime: {name} {value} (from {source}) is not a multiple of {rule.multiple}, which "
                             f"{rule.name} needs ({rule.why}). Use {_nearest(value, rule.multiple)}.")
    off_grid = [(name, value) for name, value in zip(("width", "height"), size) if rule.recommended and value % rule.recommended]
    if off_grid:
        source = "'width'/'height'" if custom else f"preset {preset!r}"
        sides = " and ".join(f"{name} {value}" for name, value in off_grid)
        advice = "; ".join(f"{name} {_nearest(value, rule.recommended)}" for name, value in off_grid)
        warn(f"FlowAnime: {sides} (from {source}) is not a multiple of {rule.recommended}: {rule.recommended_why}. "
             f"The size works; on the card's grid: {advice}.")
    return size


def _nearest(value: int, multiple: int) -> str:
    lower = max(multiple, value // multiple * multiple)
    return f"{lower} or {lower + multiple}"
