"""Node: a sigma schedule calibrated to the connected model (samplers/calibrate.py)."""

from __future__ import annotations

from ..comfy_adapter import calibration
from ..samplers.calibrate import MAX_STEPS, CalibrationSettings


class CalibratedSchedule:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model to calibrate for, with its LoRAs and model-sampling patch."}),
                "positive": ("CONDITIONING", {"tooltip": "The prompt you will sample with (the schedule depends on it)."}),
                "negative": ("CONDITIONING", {"tooltip": "The negative prompt you will sample with (unused at CFG 1, "
                                                         "as in sampling)."}),
                "cfg": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "The CFG you will sample with (the schedule depends on it)."}),
                "latent": ("LATENT", {"tooltip": "Sets the latent's size and channels (for an eps or v model, the first image's values "
                                      "too: its solve starts there); its batch size does not matter."}),
                "steps": ("INT", {"default": 12, "min": 2, "max": MAX_STEPS,
                                  "tooltip": "Model calls per image of the sampler this schedule is for (exp_multistep: "
                                             "one call per sigma above 0)."}),
                "order": ("INT", {"default": 3, "min": 1, "max": 3,
                                  "tooltip": "exp_multistep's predictor order (its corrector is one higher)."}),
                "draws": ("INT", {"default": 1, "min": 1, "max": 8,
                                  "tooltip": "Noise draws the teacher solves (one batch): more draws, a schedule less "
                                             "tied to one seed, at more cost per call."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Seed of the calibration's noise draws (not of your images)."}),
            },
            "optional": {
                "teacher_log10_rtol": ("FLOAT", {
                    "default": -2.5, "min": -6.0, "max": -1.5, "step": 0.25, "advanced": True,
                    "tooltip": "Tolerance of the adaptive teacher solve (power of ten): tighter finds the bends more "
                               "finely and costs more calls, once."}),
                "sigma_floor": ("FLOAT", {
                    "default": 0.001, "min": 0.00001, "max": 0.05, "step": 0.0001, "round": False, "advanced": True,
                    "tooltip": "Where the teacher stops and, unless the check ends the schedule earlier, the last "
                               "call is made (eps/v models: no lower than their smallest trained sigma)."}),
                "check": ("BOOLEAN", {
                    "default": True, "advanced": True,
                    "tooltip": "Run the schedule on the draws for two spreads of the calls (2 x steps more calls), "
                               "and again ending where the teacher's denoised prediction had settled when that is "
                               "well above sigma_floor (2 x steps more); keep the closest to the teacher and report "
                               "the errors. Off: the first spread down to sigma_floor, unchecked."}),
                "use_cache": ("BOOLEAN", {
                    "default": True, "advanced": True,
                    "tooltip": "Read and write the schedule under ComfyUI's user directory (flowanime/schedules). "
                               "Off: calibrate every run, and write nothing."}),
            },
        }

    RETURN_TYPES = ("SIGMAS", "STRING")
    RETURN_NAMES = ("sigmas", "report")
    OUTPUT_TOOLTIPS = (
        "For SamplerCustomAdvanced's sigmas input, with the Runge-Kutta ODE Sampler's exp_multistep method.",
        "The sigmas, the calibration's model calls (none when read from the cache) and the schedule's error "
        "against the teacher; also shown on the node after a run.",
    )
    FUNCTION = "calibrate"
    CATEGORY = "FlowAnime/sampling"
    DESCRIPTION = (
        "Sigmas for SamplerCustomAdvanced, placed where this model's trajectories bend: one adaptive solve on a few "
        "noise draws (once; the result is cached) decides where the calls go. Use with the Runge-Kutta ODE Sampler's "
        "exp_multistep method. The report says what the calibration cost."
    )

    def calibrate(self, model, positive, negative, cfg, latent, steps, order, draws, seed,
                  teacher_log10_rtol=-2.5, sigma_floor=0.001, check=True, use_cache=True):
        settings = CalibrationSettings(steps=steps, order=order, teacher_log10_rtol=teacher_log10_rtol,
                                       sigma_floor=sigma_floor, check=check)
        sigmas, report, _ = calibration.calibrate(model, positive, negative, cfg, latent, settings, draws, seed,
                                                  use_cache=use_cache)
        return {"ui": {"text": [report]}, "result": (sigmas, report)}
