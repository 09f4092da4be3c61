"""FlowAnime: ComfyUI nodes for rectified-flow (flow-matching) anime checkpoints.

ComfyUI imports this file from custom_nodes/. Keep it light: node modules import ComfyUI and
heavy libraries only inside their functions.
"""

from .comfy_adapter.models import install_load_check
from .comfy_adapter.prompt_support import register_routes
from .comfy_adapter.web_folder import warn_about_folder_name
from .nodes.latent_nodes import EmptyLatentForModel
from .nodes.model_sampling_nodes import ModelSamplingRectifiedFlow
from .nodes.prompt_nodes import BooruPromptNormalizer, CLIPTextEncodeBreak
from .nodes.sampler_nodes import SamplerRungeKuttaODE, register_ksampler_entries
from .nodes.schedule_nodes import CalibratedSchedule

# Node ids are stable forever: saved workflows refer to them.
NODE_CLASS_MAPPINGS = {
    "FlowAnimeModelSamplingRectifiedFlow": ModelSamplingRectifiedFlow,
    "FlowAnimeSamplerRungeKuttaODE": SamplerRungeKuttaODE,
    "FlowAnimeBooruPromptNormalizer": BooruPromptNormalizer,
    "FlowAnimeCLIPTextEncodeBreak": CLIPTextEncodeBreak,
    "FlowAnimeEmptyLatentForModel": EmptyLatentForModel,
    "FlowAnimeCalibratedSchedule": CalibratedSchedule,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "FlowAnimeModelSamplingRectifiedFlow": "Model Sampling Rectified Flow (FlowAnime)",
    "FlowAnimeSamplerRungeKuttaODE": "Runge-Kutta ODE Sampler (FlowAnime)",
    "FlowAnimeBooruPromptNormalizer": "Booru Prompt Normalizer (FlowAnime)",
    "FlowAnimeCLIPTextEncodeBreak": "CLIP Text Encode with BREAK (FlowAnime)",
    "FlowAnimeEmptyLatentForModel": "Empty Latent for Model (FlowAnime)",
    "FlowAnimeCalibratedSchedule": "Calibrated Schedule (FlowAnime)",
}

# The graph editor's extension (web/flowanime.js): live token/chunk counter and the reports on the nodes.
WEB_DIRECTORY = "./web"

# The flowanime_* samplers (dopri5, bosh3, adams_pc, flow_adams_pc, flow_multistep) in KSampler's own list.
register_ksampler_entries()
# On a ComfyUI without Anima support, notice Anima checkpoints it loads as Cosmos-Predict2.
install_load_check()
# The counter's server route (only when ComfyUI's server is running).
register_routes()
# A folder named "FlowAnime-main (1)" gets no editor extension from ComfyUI: say so in the log.
warn_about_folder_name(__file__)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
