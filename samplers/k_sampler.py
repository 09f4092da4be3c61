"""Our solvers as a k-diffusion sampler function, the callable ComfyUI's KSAMPLER runs:
fn(model, x, sigmas, extra_args, callback, disable) -> latent. No ComfyUI import: the interrupt
check, the sigma floor, the conditioning reader and the logger are passed in by
comfy_adapter/samplers.py."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from . import tableaux
from .inputs import check_conditioning, check_latent, check_sigmas, resolvable_tolerances, solve_dtype
from .multistep import solve_adams_pc, solve_exp_multistep, solve_flow_adams_pc, solve_flow_multistep
from .ode import (
    ODE_FORMS,
    AdaptiveSettings,
    SolveStats,
    StepInfo,
    Switching,
    budget_spent_message,
    calls_for_one_step,
    check_model_output,
    check_model_precision,
    ddim,
    solve_adaptive,
    solve_fixed,
    travelled,
)
from .singlestep import solve_exp_multistep_staged_end, solve_exp_singlestep

log = logging.getLogger("FlowAnime")

# Adaptive, one model call per step (samplers/multistep.py): in log sigma on the denoised prediction,
# and in sigma on the velocity.
MULTISTEP = {"adams_pc": solve_adams_pc, "flow_adams_pc": solve_flow_adams_pc}
# The same two on the given sigmas, one model call per sigma, and the methods with single-step
# exponential stages (samplers/singlestep.py), whose interval to sigma 0 ends at sigma_min:
# exp_singlestep, `order` calls per step, and exp_multistep with its last interval so staged:
# (solver, default order).
FIXED_MULTISTEP = {"exp_multistep": (solve_exp_multistep, 3), "flow_multistep": (solve_flow_multistep, 2)}
FIXED_STAGED = {"exp_singlestep": (solve_exp_singlestep, 3),
                "exp_multistep_staged_end": (solve_exp_multistep_staged_end, 3)}
FIXED_ORDERED = {**FIXED_MULTISTEP, **FIXED_STAGED}
METHODS = (tuple(tableaux.ADAPTIVE) + tuple(MULTISTEP) + tuple(tableaux.FIXED) + tuple(FIXED_MULTISTEP)
           + tuple(FIXED_STAGED))


@dataclass(frozen=True)
class SamplerConfig:
    method: str = "dopri5"
    log10_rtol: float = -2.5
    log10_atol: float = -3.5
    max_model_calls: int = 300
    sigma_min: float = 1e-3  # where an adaptive solve stops and returns the denoised prediction
    ode_form: str = "data"
    order: int | None = None  # a fixed multistep method's predictor order, exp_singlestep's (None: FIXED_ORDERED's)
    model_precision: str = "float32"  # the dtype the model computes in, one of MODEL_PRECISIONS (set by the ComfyUI adapter)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"FlowAnime: 'method' must be one of {sorted(METHODS)}, got {self.method!r}.")
        if self.ode_form not in ODE_FORMS:
            raise ValueError(f"FlowAnime: 'ode_form' must be one of {ODE_FORMS}, got {self.ode_form!r}.")
        for name in ("log10_rtol", "log10_atol"):
            value = getattr(self, name)
            if not math.isfinite(value) or not -12 <= value <= 0:
                raise ValueError(f"FlowAnime: '{name}' must be between -12 and 0, got {value!r}. Typical: -2.5 and -3.5.")
        if self.max_model_calls < max(4, self.calls_for_one_step):
            raise ValueError(f"FlowAnime: 'max_model_calls' must be at least {max(4, self.calls_for_one_step)} for "
                             f"{self.method} (what one step of it and the image at the end take), got "
                             f"{self.max_model_calls}.")
        check_model_precision(self.model_precision)
        if self.order not in (None, 1, 2, 3):
            raise ValueError(f"FlowAnime: 'order' must be 1, 2 or 3, got {self.order!r}.")
        if not 0 < self.sigma_min < 1:
            raise ValueError(f"FlowAnime: 'sigma_min' must be between 0 and 1, got {self.sigma_min!r}. Typical: 0.001.")

    @property
    def multistep_order(self) -> int | None:
        """The order a fixed multistep method (its predictor) or exp_singlestep runs at; None for the others."""
        if self.method not in FIXED_ORDERED:
            return None
        return self.order or FIXED_ORDERED[self.method][1]

    @property
    def calls_for_one_step(self) -> int:
        """Model calls an adaptive Runge-Kutta solve of this method needs for one step (0 for the others)."""
        tableau = tableaux.ALL.get(self.method)
        return calls_for_one_step(tableau) if tableau is not None and tableau.adaptive else 0

    @property
    def tableau(self):
        """The Butcher tableau of a Runge-Kutta method; None for the multistep methods."""
        return tableaux.ALL.get(self.method)

    @property
    def adaptive(self) -> bool:
        return self.method in MULTISTEP or (self.tableau is not None and self.tableau.adaptive)

    @property
    def adaptive_settings(self):
        return AdaptiveSettings(rtol=10**self.log10_rtol, atol=10**self.log10_atol, max_model_calls=self.max_model_calls,
                                model_precision=self.model_precision)


# A conditioning or ControlNet that starts or stops at a sigma (ConditioningSetTimestepRange, a
# ControlNet's start and end percent, scheduled prompts) changes the model's output there for the whole
# image, a jump no shorter step removes: an adaptive solve ends just before such a sigma and starts
# afresh just after it (a relative BREAKPOINT_GAP either side, so each side sees its own conditioning),
# where its step control would otherwise shrink the steps onto the jump. Breakpoints closer than
# BREAKPOINT_MARGIN (relative) to either end are left to the solve.
BREAKPOINT_GAP = 1e-5
BREAKPOINT_MARGIN = 1e-3


def splits_the_solve(breakpoint: float, sigma_start: float, sigma_end: float) -> bool:
    """Whether a solve from sigma_start to sigma_end is split at `breakpoint`: strictly inside, by more
    than BREAKPOINT_MARGIN (relative) from either end."""
    low, high = min(sigma_start, sigma_end), max(sigma_start, sigma_end)
    return math.isfinite(breakpoint) and low * (1 + BREAKPOINT_MARGIN) < breakpoint < high / (1 + BREAKPOINT_MARGIN)


def segments_between(sigma_start: float, sigma_end: float, breakpoints) -> list[tuple[float, float]]:
    """(from, to) sigma pairs covering sigma_start to sigma_end (either direction), split at each
    breakpoint strictly inside by more than BREAKPOINT_MARGIN: one segment ends BREAKPOINT_GAP before
    it, the next starts BREAKPOINT_GAP after it."""
    down = sigma_end < sigma_start
    clusters = []  # [lowest, highest]: nearly equal breakpoints are cut around as one
    for b in sorted(float(b) for b in breakpoints if splits_the_solve(b, sigma_start, sigma_end)):
        if clusters and b <= clusters[-1][1] * (1 + 4 * BREAKPOINT_GAP):
            clusters[-1][1] = b
        else:
            clusters.append([b, b])
    if down:  # a segment ends above the cluster's highest and the next starts below its lowest
        cuts = [(hi * (1 + BREAKPOINT_GAP), lo * (1 - BREAKPOINT_GAP)) for lo, hi in reversed(clusters)]
    else:
        cuts = [(lo * (1 - BREAKPOINT_GAP), hi * (1 + BREAKPOINT_GAP)) for lo, hi in clusters]
    starts = [sigma_start, *(after for _, after in cuts)]
    ends = [*(before for before, _ in cuts), sigma_end]
    return list(zip(starts, ends))


def solve_in_segments(solve_segment, x, sigma_start: float, sigma_end: float, breakpoints, settings: AdaptiveSettings,
                      method: str, on_step: Callable[[StepInfo], None] | None,
                      log: Callable[[str], None] | None = None):
    """An adaptive solve run segment by segment (segments_between), each started afresh from where the
    last ended, sharing one call budget (AdaptiveSettings.calls_before) and warning once when it runs
    out. solve_segment(x, from, to, settings, on_step, log) -> (x, denoised, stats). Returns (x at
    sigma_end, denoised prediction there, stats over all segments)."""
    segments = segments_between(sigma_start, sigma_end, breakpoints)
    if len(segments) == 1:
        return solve_segment(x, sigma_start, sigma_end, settings, on_step, log)
    total = SolveStats(method)
    reached = []  # the current segment's start and accepted sigmas
    warned = False

    def whole_range_progress(info: StepInfo):
        nonlocal last_prediction
        last_prediction = info.denoised
        reached.append(info.sigma)
        if on_step is not None:
            so_far = replace(info.stats, model_calls=total.model_calls + info.stats.model_calls)
            on_step(replace(info, progress=travelled(sigma_start, sigma_end, info.sigma), stats=so_far))

    def warn_once(message: str):
        nonlocal warned
        if log is not None and not warned:
            log(message)
        warned = True

    denoised, last_prediction, carried, reached_end = None, None, settings.first_log_step, sigma_start
    for begin, end in segments:
        if settings.max_model_calls - total.model_calls < 2:
            # no call left to start afresh: DDIM on the last prediction to the end, as a solve whose
            # budget runs out finishes
            total.budget_exhausted = True
            if last_prediction is not None:
                x = ddim(x, last_prediction, reached_end, sigma_end)
            warn_once(budget_spent_message(method, settings.max_model_calls, reached_end))
            denoised = last_prediction  # what that step held constant: the image at sigma 0
            break
        # a segment starts with the longer of the last one's last two steps (the very last may have been
        # cut short to end at the breakpoint) rather than a cautious first step
        steps = [abs(math.log(a / b)) for a, b in zip(reached, reached[1:])][-2:]
        carried = max(steps) if len(steps) == 2 else carried
        reached[:] = [begin]
        x, denoised, stats = solve_segment(x, begin, end, replace(settings, calls_before=total.model_calls,
                                                                  first_log_step=carried),
                                           whole_range_progress, warn_once)
        for name in ("model_calls", "accepted", "rejected", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        total.budget_exhausted |= stats.budget_exhausted
        last_prediction = denoised if denoised is not None else last_prediction
        reached_end = end
    total.final_sigma = sigma_end
    return x, denoised, total


def no_sigma_floor(model) -> float:
    """Without ComfyUI, an adaptive solve may go down to sigma_min. comfy_adapter/samplers.py passes
    a floor read from the model KSAMPLER hands over (its smallest trained sigma for eps/v models)."""
    return 0.0


def make_sampler_function(config: SamplerConfig, on_model_call: Callable[[], None] | None = None,
                          logger: logging.Logger = log, sigma_floor: Callable[[object], float] = no_sigma_floor,
                          conditioning_of: Callable[[object], dict] | None = None,
                          switching_of: Callable[[object, dict], Switching | None] | None = None,
                          breakpoints_of: Callable[[object, float, float], list[float]] | None = None):
    """conditioning_of(model) -> {"positive": [tensors], ...}: the conditioning the model will see, so
    a non-finite prompt is named before the first call (comfy_adapter/samplers.py reads it from ComfyUI).
    switching_of(model, extra_args) -> where the model's output switches form between two sigmas
    (ode.Switching: an inpainting mask that changes with sigma), for the adaptive methods' error control.
    breakpoints_of(model, sigma_start, sigma_end) -> the sigmas where the conditioning starts or stops
    (solve_in_segments)."""

    @torch.no_grad()  # like ComfyUI's own samplers: stages must not keep autograd graphs
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        sig = [float(s) for s in sigmas]
        # Every input is checked here, before the first model call (samplers/inputs.py). Sigmas first:
        # ComfyUI scales the noise by sigmas[0], so a NaN sigma arrives as a NaN latent too.
        check_sigmas(sig, config.adaptive)
        check_latent(x)
        if conditioning_of is not None:
            check_conditioning(conditioning_of(model))
        if len(sig) < 2 or all(s == sig[0] for s in sig):
            return x  # nothing to integrate: the latent as it came, as ComfyUI's samplers return it
        out_dtype, work_dtype = x.dtype, solve_dtype(x.dtype)
        x = x.to(work_dtype)
        s_in = x.new_ones([x.shape[0]])
        total_steps = len(sig) - 1
        settings, clamp_note = resolvable_tolerances(config.adaptive_settings, work_dtype)
        if clamp_note is not None and config.adaptive:
            logger.warning(clamp_note)

        def denoiser(x_, sigma):
            return model(x_, sigma * s_in, **extra_args).to(work_dtype)

        bar = _console_bar(disable)

        def on_step(info: StepInfo):
            if callback is not None:
                # The solve's progress (steps done; log sigma travelled for adaptive methods) on the step
                # count ComfyUI's progress bar was made for.
                i = min(total_steps - 1, max(0, math.ceil(info.progress * total_steps) - 1))
                callback({"x": info.x, "i": i, "sigma": info.sigma, "sigma_hat": info.sigma, "denoised": info.denoised})
            if bar is not None:
                bar.n = round(100 * info.progress)
                bar.set_postfix_str(f"sigma {info.sigma:.3g}, {info.stats.model_calls} calls", refresh=True)

        tableau = config.tableau
        try:
            if config.method in FIXED_MULTISTEP:
                solve = FIXED_MULTISTEP[config.method][0]
                breakpoints = breakpoints_of(model, sig[0], sig[-1]) if breakpoints_of is not None else ()
                out, stats = solve(denoiser, x, sig, config.multistep_order, on_step, on_model_call, breakpoints)
            elif config.method in FIXED_STAGED:
                # the interval to 0 ends where an adaptive solve would (sigma_min or the model's floor)
                breakpoints = breakpoints_of(model, sig[0], sig[-1]) if breakpoints_of is not None else ()
                out, stats = FIXED_STAGED[config.method][0](
                    denoiser, x, sig, config.multistep_order, on_step, on_model_call, breakpoints,
                    sigma_floor=max(config.sigma_min, sigma_floor(model)))
            elif not config.adaptive:
                out, stats = solve_fixed(denoiser, x, sig, tableau, config.ode_form, on_step, on_model_call)
            else:
                # A rising schedule (inversion, unsampling) is integrated up to its last sigma.
                ends_at_zero = sig[-1] <= 0
                floor = sigma_floor(model)
                sigma_end = max(config.sigma_min, floor) if ends_at_zero else sig[-1]
                if ends_at_zero and sig[0] <= sigma_end:  # already below where a solve stops: denoise once
                    if on_model_call is not None:
                        on_model_call()
                    out = denoiser(x, sig[0])
                    check_model_output(config.method, out, sig[0], 1)
                    return out.to(out_dtype)
                switching = switching_of(model, extra_args) if switching_of is not None else None

                def solve_segment(x_from, sigma_from, sigma_to, segment_settings, segment_on_step, segment_log):
                    if tableau is None:  # the multistep methods have their own forms: ode_form does not apply
                        return MULTISTEP[config.method](
                            denoiser, x_from, sigma_from, sigma_to, segment_settings, on_step=segment_on_step,
                            on_model_call=on_model_call, log=segment_log, switching=switching,
                        )
                    return solve_adaptive(
                        denoiser, x_from, sigma_from, sigma_to, tableau, segment_settings, config.ode_form,
                        segment_on_step, on_model_call, segment_log, switching,
                    )

                breakpoints = breakpoints_of(model, sig[0], sigma_end) if breakpoints_of is not None else ()
                x_end, denoised, stats = solve_in_segments(solve_segment, x, sig[0], sigma_end, breakpoints, settings,
                                                           config.method, on_step, logger.warning)
                # A schedule that ends at 0 gets the model's denoised prediction at sigma_end; a
                # partial pass (ends above 0) gets the latent at its last sigma.
                out = denoised if ends_at_zero and denoised is not None else x_end
                if stats.budget_exhausted and denoised is not None:  # its DDIM finish reported no step
                    on_step(StepInfo(max(sig[-1], 0.0), x_end, denoised, 1.0, stats))
        finally:
            if bar is not None:
                bar.close()
        logger.info("FlowAnime %s", stats.summary())
        return out.to(out_dtype)

    sample.flowanime_config = config
    return sample


def _console_bar(disable):
    if disable:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=100, unit="%", desc="FlowAnime ODE", leave=False)

