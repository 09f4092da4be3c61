"""Image sizes the model cards recommend, and the side multiples each model family needs (plain Python)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    multiple: int  # both sides must be multiples of this (pixels)
    why: str


# SD3.5 Medium's card: sides a multiple of 64 (the MMDiT's 2x2 patches over 8x latents, plus its
# position-embedding grid); SDXL buckets are multiples of 32 (RouWei, Illustrious); SD1.5 needs 8
# (VAE); other patch-2 DiTs (Flux, Anima) 16.
RULES = {
    "SD3": FamilyRule("SD3", 64, "SD3.5 models want sides that are multiples of 64"),
    "SDXL": FamilyRule("SDXL", 32, "SDXL models are trained on sizes that are multiples of 32"),
    "SD15": FamilyRule("SD1.5", 8, "the VAE downsamples by 8"),
}
PATCHED_DIT = FamilyRule("DiT", 16, "a 2x2-patch DiT over an 8x VAE needs multiples of 16")
DEFAULT = FamilyRule("this model", 8, "the VAE downsamples by 8")


def rule_for(model_config_name: str, latent_channels: int, downscale: int = 8) -> FamilyRule:
    """The side multiple for a family whose VAE downsamples by `downscale` (8 for every family above;
    16 or 32 for some newer latent formats): at least the downscale, so the latent is never cut."""
    rule = next((r for prefix, r in RULES.items() if model_config_name.startswith(prefix)), None)
    if rule is None:
        rule = PATCHED_DIT if latent_channels == 16 and downscale == 8 else DEFAULT
    multiple = math.lcm(rule.multiple, downscale)
    if multiple == rule.multiple:
        return rule
    return FamilyRule(rule.name, multiple, f"its VAE downsamples by {downscale}")


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


def resolve_size(preset: str, width: int, height: int, rule: FamilyRule) -> tuple[int, int]:
    """The preset's size (or width x height for custom), checked against the family's multiple."""
    if preset not in PRESETS:
        raise ValueError(f"FlowAnime: 'preset' must be one of {list(PRESETS)}, got {preset!r}.")
    size = PRESETS[preset] or (width, height)
    for name, value in zip(("width", "height"), size):
        if value <= 0 or value % rule.multiple:
            lower = max(rule.multiple, value // rule.multiple * rule.multiple)
            source = f"'{name}'" if PRESETS[preset] is None else f"preset {preset!r}"
            raise ValueError(
                f"FlowAnime: {name} {value} (from {source}) is not a multiple of {rule.multiple}, which "
                f"{rule.name} needs ({rule.why}). Use {lower} or {lower + rule.multiple}."
            )
    return size
