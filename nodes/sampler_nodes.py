"""Nodes and KSampler entries for the Runge-Kutta ODE samplers."""

from __future__ import annotations

import logging

from ..comfy_adapter import samplers as comfy_samplers
from ..comfy_adapter.samplers import comfy_sampler_function  # noqa: F401  (bench/ builds its samplers with it)
from ..samplers.k_sampler import METHODS, SamplerConfig
from ..samplers.ode import ODE_FORMS

log = logging.getLogger("FlowAnime")

# Entries in KSampler's own sampler list (names are saved in workflows: never rename).
KSAMPLER_ENTRIES = {
    # Each at the loosest half-decade tolerance that keeps the latent error within ACCURACY_TARGET on
    # every benchmark problem (README: "How accurate is accurate enough").
    "flowanime_dopri5": SamplerConfig("dopri5", log10_rtol=-2.0, log10_atol=-3.0),
    "flowanime_bosh3": SamplerConfig("bosh3", log10_rtol=-3.0, log10_atol=-4.0),
    "flowanime_adams_pc": SamplerConfig("adams_pc", log10_rtol=-2.5, log10_atol=-3.5),
    "flowanime_flow_adams_pc": SamplerConfig("flow_adams_pc", log10_rtol=-2.5, log10_atol=-3.5),
    # Fixed-step: one model call per sigma of the scheduler (beta measured best; README benchmark).
    "flowanime_flow_multistep": SamplerConfig("flow_multistep"),
}
# The node's order widget: "default" leaves each fixed multistep method at its own (FIXED_MULTISTEP).
ORDER_CHOICES = {"default": None, "1": 1, "2": 2, "3": 3}
# RMS latent error at which a decoded 8-bit image stops changing, with margin: see the README.
ACCURACY_TARGET = 3e-3


class SamplerRungeKuttaODE:
    """A SAMPLER for SamplerCustom / SamplerCustomAdvanced."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "method": (list(METHODS), {
                    "default": "dopri5",
                    "tooltip": "Adaptive (choose their own steps): dopri5 (5th order, 6 calls/step), bosh3 (3rd, 3 "
                               "calls/step), heun_euler and fehlberg2 (2nd, cheap), adams_pc (multistep predictor-"
                               "corrector in log sigma, 1 call/step), flow_adams_pc (the same on the flow's velocity "
                               "in sigma, 1 call/step: the fewest calls of the adaptive methods on flow models; on eps/v "
                               "models use adams_pc). Fixed-step (follow "
                               "the scheduler's sigmas): euler (= DDIM here), heun, midpoint, ralston3, rk4, exp_multistep "
                               "(adams_pc's predictor-corrector on the scheduler's sigmas, order 3: one call per step, "
                               "like UniPC), flow_multistep (the same on the flow's velocity in sigma, order 2: "
                               "one call per step; made for flow models, best on the beta scheduler in our "
                               "benchmark), exp_singlestep (DPM-Solver-3's single-step "
                               "exponential integrator, 3 calls per step, no history: the fewest calls on few "
                               "steps where the last stretch down to sigma 0 bends; at 2-4 steps use "
                               "linear_quadratic, whose short first step keeps each image on its subject) and "
                               "exp_multistep_staged_end (exp_multistep, whose last interval down to sigma 0 is "
                               "one exp_singlestep step instead of a jump to the last prediction: 2 calls more "
                               "than the schedule's steps).",
                }),
                "log10_rtol": ("FLOAT", {
                    "default": -2.5, "min": -12.0, "max": 0.0, "step": 0.1,
                    "tooltip": "Relative tolerance as a power of ten (adaptive methods). Lower = more accurate, more "
                               "model calls; below about -4.9 (float32 rounding) it is clamped, with a log line. "
                               "-2.5 kept the latent error below what an 8-bit image shows on the benchmark "
                               "problems (README, which names the exceptions) for adams_pc, flow_adams_pc and dopri5; "
                               "bosh3 needs -3 with log10_atol -4.",
                }),
                "log10_atol": ("FLOAT", {
                    "default": -3.5, "min": -12.0, "max": 0.0, "step": 0.1,
                    "tooltip": "Absolute tolerance as a power of ten (adaptive methods), in latent units; clamped "
                               "as log10_rtol is.",
                }),
                "max_model_calls": ("INT", {
                    "default": 300, "min": 4, "max": 100000,
                    "tooltip": "Budget of model calls per image, for the adaptive methods (a fixed-step method makes "
                               "the calls its schedule asks for); a CFG pair counts once. When it runs out the image is finished "
                               "with one large step and a warning is logged. dopri5 needs at least 7.",
                }),
                "sigma_min": ("FLOAT", {
                    "default": 0.001, "min": 0.00001, "max": 0.5, "step": 0.0001, "round": False,
                    "tooltip": "An adaptive solve stops here (eps/v models: no lower than their smallest trained sigma) and "
                               "returns the model's denoised prediction, instead of evaluating at sigma=0; "
                               "exp_singlestep and exp_multistep_staged_end end their last step here.",
                }),
            },
            "optional": {
                "ode_form": (list(ODE_FORMS), {
                    "default": "data", "advanced": True,
                    "tooltip": "The Runge-Kutta methods' variable (adams_pc, flow_adams_pc, the multistep and singlestep "
                               "methods have their own). data: integrate x/sigma over 1/sigma, where the right-hand "
                               "side is the denoised prediction (smooth to the end). velocity: dx/dsigma as other "
                               "ODE packs do.",
                }),
                "order": (list(ORDER_CHOICES), {
                    "default": "default", "advanced": True,
                    "tooltip": "Predictor order of exp_multistep and flow_multistep (the corrector is one higher), "
                               "the order of exp_singlestep (= its model calls per step) and of "
                               "exp_multistep_staged_end (both parts). default: 3 for exp_multistep, exp_singlestep "
                               "and exp_multistep_staged_end, 2 for flow_multistep (3 can need fewer calls on long "
                               "schedules and more on short ones: README benchmark). Other methods ignore it.",
                }),
            },
        }

    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("For SamplerCustom's or SamplerCustomAdvanced's sampler input.",)
    FUNCTION = "get_sampler"
    CATEGORY = "FlowAnime/sampling"
    DESCRIPTION = (
        "Runge-Kutta ODE sampler for SamplerCustom/SamplerCustomAdvanced. Adaptive methods (dopri5, bosh3, adams_pc...) "
        "choose their own steps: the scheduler only sets where sampling starts and ends. Deterministic: no noise "
        "is added."
    )

    def get_sampler(self, method, log10_rtol, log10_atol, max_model_calls, sigma_min, ode_form="data",
                    order="default"):
        if order not in ORDER_CHOICES:
            raise ValueError(f"FlowAnime: 'order' must be one of {list(ORDER_CHOICES)}, got {order!r}.")
        config = SamplerConfig(method, log10_rtol, log10_atol, max_model_calls, sigma_min, ode_form,
                               ORDER_CHOICES[order])
        return (comfy_samplers.make_comfy_sampler(config),)


def register_ksampler_entries() -> bool:
    """Our entries in KSampler's own sampler list (comfy_adapter/samplers.py does the registering).
    Returns False when ComfyUI is not importable (the pack imported outside ComfyUI)."""
    return comfy_samplers.register_ksampler_entries(KSAMPLER_ENTRIES)
