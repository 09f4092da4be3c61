"""Checkpoint families a ComfyUI cannot load correctly: an Anima checkpoint on a ComfyUI without Anima.

ComfyUI tells Anima from Cosmos-Predict2 by its LLM-adapter weights (comfy/model_detection.py
@0b61ce5: a `blocks.0.mlp.layer1.weight` DiT is "anima" when
`llm_adapter.blocks.0.cross_attn.q_proj.weight` is present, else "cosmos_predict2"). A ComfyUI
without that branch (0.3.64) loads an Anima file as plain Cosmos-Predict2, drops the adapter
weights, and samples garbage. The loaded model keeps no trace of the dropped weights, so on such a
ComfyUI we watch model detection itself: `install_load_check` wraps
`comfy.model_detection.model_config_from_unet` (what both CheckpointLoaderSimple and UNETLoader
call) and remembers the configs it returned for Anima state dicts. Our nodes then stop with a clear
message. On a ComfyUI that knows Anima nothing is wrapped.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger("FlowAnime")

ANIMA_ADAPTER_KEY = "llm_adapter.blocks.0.cross_attn.q_proj.weight"
ANIMA_IMAGE_MODEL = "anima"  # the unet_config "image_model" of ComfyUI's Anima model config

# On a model config: the family it was wrongly loaded as a stand-in for. On the object, not in a
# table of this module, so that a second copy of the pack (whose nodes ComfyUI then runs, while model
# detection stays wrapped by the first) reads what the first copy's check marked.
UNSUPPORTED_ATTRIBUTE = "flowanime_unsupported_family"


def is_anima_state_dict(state_dict, prefix: str = "") -> bool:
    """An Anima DiT: ComfyUI's own test, by its LLM-adapter weights."""
    return f"{prefix}{ANIMA_ADAPTER_KEY}" in state_dict


def comfyui_supports_anima() -> bool:
    import comfy.supported_models

    return any(getattr(m, "unet_config", {}).get("image_model") == ANIMA_IMAGE_MODEL
               for m in getattr(comfy.supported_models, "models", ()))


def _loaded_as(model_config) -> str:
    return str(getattr(model_config, "unet_config", {}).get("image_model", type(model_config).__name__))


def wrap_model_detection(original):
    """model_config_from_unet, remembering configs returned for an Anima state dict that this
    ComfyUI detected as something else. Never changes what ComfyUI returns."""

    @functools.wraps(original)
    def model_config_from_unet(state_dict, unet_key_prefix, *args, **kwargs):
        config = original(state_dict, unet_key_prefix, *args, **kwargs)
        try:
            if config is not None and is_anima_state_dict(state_dict, unet_key_prefix) \
                    and _loaded_as(config) != ANIMA_IMAGE_MODEL:
                mark_unsupported(config, "Anima")
        except Exception:  # a check of ours must never break ComfyUI's loading
            log.debug("FlowAnime: Anima check skipped", exc_info=True)
        return config

    model_config_from_unet.flowanime_anima_check = True
    return model_config_from_unet


def install_load_check() -> bool:
    """On a ComfyUI without Anima support, watch model detection (idempotent). Returns whether the
    check is installed."""
    try:
        import comfy.model_detection as detection

        if comfyui_supports_anima():
            return False
        if not getattr(detection.model_config_from_unet, "flowanime_anima_check", False):
            detection.model_config_from_unet = wrap_model_detection(detection.model_config_from_unet)
        return True
    except Exception:  # ComfyUI absent or reshaped: the pack still loads, the check is off
        log.debug("FlowAnime: Anima load check not installed", exc_info=True)
        return False


def mark_unsupported(model_config, family: str = "Anima"):
    """What the load check records; tests use it on stand-in configs."""
    setattr(model_config, UNSUPPORTED_ATTRIBUTE, family)


def unsupported_family(model_config) -> str | None:
    family = getattr(model_config, UNSUPPORTED_ATTRIBUTE, None)
    return family if isinstance(family, str) else None


def require_supported_config(model_config):
    """Stop with a clear message when the model is a checkpoint this ComfyUI loaded as something else."""
    family = unsupported_family(model_config)
    if family is None:
        return
    raise RuntimeError(
        f"FlowAnime: this is an {family} checkpoint, but this ComfyUI has no {family} support: it loaded the "
        f"file as {_loaded_as(model_config)} and dropped the {family} weights, so every image would be "
        f"garbage. Update ComfyUI to a version with {family} support (0.38.x has it), then load the model again."
    )


def require_supported_model(model_patcher):
    require_supported_config(getattr(getattr(model_patcher, "model", None), "model_config", None))
