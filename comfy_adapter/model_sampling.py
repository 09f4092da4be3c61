"""ComfyUI's model-sampling objects: our rectified-flow class and the patch that installs it.

Checked against newer ComfyUI: comfy/model_sampling.py@2fd2083 (ModelSamplingDiscreteFlow.__init__
(model_config) calls set_noise_scale(sampling_settings["noise_scale"]) and set_parameters(shift,
multiplier); CONST.noise_scaling scales the noise by noise_scale; ModelSamplingAV adds audio_shift)
and comfy_extras/nodes_model_advanced.py@691e827 (ModelNoiseScale rebuilds a model's sampling as
type(original)(model_config), then set_parameters(shift=original.shift,
multiplier=original.multiplier) and set_noise_scale; ModelSamplingSD3 copies original.noise_scale).
Our class follows that convention: the constructor takes the model config, the conventions ride on
the class, and shift/multiplier/noise_scale are state that set_parameters/set_noise_scale change.
"""

from __future__ import annotations

import functools
import logging

from ..model_sampling.flow import FlowSchedule, require_positive, resolution_shift
from .latent import latent_pixel_size
from .models import require_supported_model

log = logging.getLogger("FlowAnime")


def _sampling_settings(model_config) -> dict:
    return dict(getattr(model_config, "sampling_settings", None) or {})


@functools.cache
def flow_model_sampling_class(timestep_convention: str = "sigma", velocity_convention: str = "noise - data"):
    """A ModelSamplingDiscreteFlow + CONST subclass for one pair of conventions.

    Subclassing ComfyUI's own classes keeps every isinstance(..., CONST) check in ComfyUI
    (rectified-flow ancestral samplers, CFG rescale, noise scaling) treating the model as flow. The
    conventions are class attributes, so a core node that rebuilds the object as
    type(original)(model_config) keeps them; shift and multiplier come back through set_parameters.
    """
    import comfy.model_sampling as cms

    FlowSchedule(3.0, 1000.0, timestep_convention, velocity_convention)  # rejects unknown conventions

    class FlowAnimeModelSampling(cms.ModelSamplingDiscreteFlow, cms.CONST):
        def __init__(self, model_config=None):
            # ComfyUI's own constructor: shift/multiplier (and, in newer ComfyUI, noise_scale) from
            # the model config's sampling settings, through our set_parameters.
            super().__init__(model_config)
            self.set_noise_scale(_sampling_settings(model_config).get("noise_scale", getattr(self, "noise_scale", 1.0)))

        def set_parameters(self, shift=1.0, timesteps=1000, multiplier=1000):
            self.schedule = FlowSchedule(shift, multiplier, timestep_convention, velocity_convention)
            self.shift = self.schedule.shift
            self.multiplier = self.schedule.multiplier
            self.register_buffer("sigmas", self.schedule.sigma_table(timesteps))

        def set_noise_scale(self, noise_scale):
            self.noise_scale = float(noise_scale)

        def timestep(self, sigma):
            return self.schedule.network_timestep(sigma)

        def sigma(self, timestep):
            return self.schedule.sigma_from_timestep(timestep)

        def percent_to_sigma(self, percent):
            return self.schedule.percent_to_sigma(percent)

        def calculate_denoised(self, sigma, model_output, model_input):
            sigma = cms.reshape_sigma(sigma, model_output.ndim)
            return self.schedule.denoised(model_input, sigma, model_output)

    FlowAnimeModelSampling.timestep_convention = timestep_convention
    FlowAnimeModelSampling.velocity_convention = velocity_convention
    return FlowAnimeModelSampling


def family_multiplier(model_patcher) -> float:
    """The network-time multiplier the checkpoint family was built with (not any patch's)."""
    import comfy.model_base

    base = model_patcher.model
    settings = _sampling_settings(base.model_config)
    if "multiplier" in settings:
        return float(settings["multiplier"])
    if getattr(base, "model_type", None) == comfy.model_base.ModelType.FLUX:
        return 1.0  # ModelSamplingFlux feeds sigma itself
    if is_cosmos_flow(model_patcher):
        return 1.0  # ModelSamplingCosmosRFlow feeds the flow time s/(s + 1) of its EDM sigma s (model_base.py@094c74c)
    return 1000.0  # SD1.x/SDXL discrete timesteps and SD3 MMDiTs


def current_model_sampling(model_patcher):
    return model_patcher.get_model_object("model_sampling")


def refuse_audio_video(model_sampling):
    """ModelSamplingAV (newer ComfyUI, LTX-2 audio-video) carries a second, audio shift that a
    single-schedule flow patch would silently drop."""
    import comfy.model_sampling as cms

    av = getattr(cms, "ModelSamplingAV", None)
    if (av is not None and isinstance(model_sampling, av)) or hasattr(model_sampling, "audio_shift"):
        raise ValueError(
            "FlowAnime: this model samples audio and video together (ComfyUI's ModelSamplingAV, with its own "
            "audio shift), which the rectified-flow patch would drop. Remove the FlowAnime model-sampling node "
            "for this model and use ComfyUI's own model-sampling node for it."
        )


def is_cosmos_flow(model_patcher) -> bool:
    """Cosmos-Predict2: a rectified flow that ComfyUI samples in EDM sigmas (ModelType.FLOW_COSMOS)."""
    import comfy.model_base

    cosmos = getattr(comfy.model_base.ModelType, "FLOW_COSMOS", None)
    return cosmos is not None and getattr(model_patcher.model, "model_type", None) == cosmos


def clean_latent_where_kept(sigma=None, noise=None, latent_image=None, **kwargs):
    """Cosmos-Predict2's scale_latent_inpaint under our flow sampling. Where a noise mask keeps the
    latent (inpainting, Video2World's given frames), ComfyUI's Cosmos sampling hands the network the
    clean latent: its scale_latent_inpaint divides by the 1 - s its input scaling multiplies by
    (CosmosPredict2, model_base.py@26adb81). Our flow input is not scaled, so the latent goes as is."""
    return latent_image


def flow_model_sampling(model_patcher, schedule: FlowSchedule):
    """Our model sampling for a schedule, built the way ComfyUI builds one (model config first, then
    set_parameters), carrying the current noise_scale."""
    original = current_model_sampling(model_patcher)
    refuse_audio_video(original)
    model_config = model_patcher.model.model_config
    ms = flow_model_sampling_class(schedule.timestep_convention, schedule.velocity_convention)(model_config)
    ms.set_parameters(shift=schedule.shift, multiplier=schedule.multiplier)
    # As ModelSamplingSD3 does: a noise scale set upstream (or the family's own) survives the patch.
    ms.set_noise_scale(getattr(original, "noise_scale", _sampling_settings(model_config).get("noise_scale", 1.0)))
    return ms


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
    require_supported_model(model_patcher)
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
    patched.add_object_patch("model_sampling", flow_model_sampling(model_patcher, schedule))
    if is_cosmos_flow(model_patcher):
        patched.add_object_patch("scale_latent_inpaint", clean_latent_where_kept)
    return patched, schedule
