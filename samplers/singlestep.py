"""exp_singlestep: DPM-Solver's single-step exponential integrators on a given schedule.

In log time lambda = -log(sigma) the flow ODE reads dx/dlambda = D - x (samplers/multistep.py), so
over a step of length h

    x(lambda + h) = e^-h x(lambda) + integral_0^h e^(s - h) D(lambda + s) ds.

A single-step method of order k calls the model k times per step: at the step's start and at
fractions STAGE_FRACTIONS[k] of it. Each intermediate point and the step's end integrate exactly the
line through the start's denoised prediction and the latest stage's (DPM-Solver-2 and -3, Lu et al.
2022, arXiv 2206.00927, in the data prediction of DPM-Solver++, arXiv 2211.01095; RES, Zhang et al.
2023, arXiv 2308.02157, call the order-2 one res_2s). Nothing is carried from step to step, so the
method is as good on the first step as on any other, and a step may be as long as the schedule makes it.

The interval down to sigma 0 is a step like the others, to a small sigma_floor (log sigma cannot
reach 0), and the sliver below it follows the last stage's velocity (x - D) / sigma, without a call:
the intermediate points spread over the whole interval in log sigma, where ComfyUI's multistep
methods jump to the last denoised prediction. exp_multistep_staged_end takes only that interval so,
after exp_multistep's one call per sigma down to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from .multistep import LOG_SIGMA_FORM, _combine, _counted_calls, _solve_fixed_multistep
from .ode import Denoiser, SolveStats, StepInfo

# Where each order calls the model, as fractions of the step in log sigma (after its start): DPM-Solver's
# r1 = 1/2 for order 2 and r1, r2 = 1/3, 2/3 for order 3.
STAGE_FRACTIONS = {1: (), 2: (1 / 2,), 3: (1 / 3, 2 / 3)}
# Below this step (in log sigma) the weights' closed forms lose digits to cancellation: a series instead.
SERIES_BELOW = 1e-3
# A last sigma this close above sigma_floor (relative) is at it: a schedule that ends on the model's
# smallest sigma reaches the solver rounded to float32, and stages over that rounding would be wasted calls.
AT_FLOOR = 1e-4


def line_weights(reach: float, node: float | None) -> tuple[float, float]:
    """The exact weights (on the start's D, on the stage's D) of integral_0^reach e^(s - reach) L(s) ds,
    L the line through D at s = 0 and at s = node (node None: the constant, DDIM's weight)."""
    if abs(reach) < SERIES_BELOW:
        first = reach - reach**2 / 2 + reach**3 / 6 - reach**4 / 24  # 1 - e^-reach
        moment = reach**2 / 2 - reach**3 / 6 + reach**4 / 24  # reach - first
    else:
        first = -math.expm1(-reach)
        moment = reach - first
    if node is None:
        return first, 0.0
    return first - moment / node, moment / node


def staged_step(call, x: torch.Tensor, s: float, end: float, start_denoised: torch.Tensor, order: int):
    """One step from sigma s to `end` (both above 0) with the start's denoised prediction in hand and
    order - 1 more calls at STAGE_FRACTIONS[order] of it in log sigma. Returns (x at end, the last
    stage's latent, its sigma, its denoised prediction); with no stage, the start's."""
    h = math.log(s / end)  # negative on a rising schedule: the weights hold for either sign
    stage_x, stage_sigma, denoised, node = x, s, start_denoised, None
    for fraction in STAGE_FRACTIONS[order]:
        reach = fraction * h
        stage_x = _combine(x, math.exp(-reach), line_weights(reach, node), [start_denoised, denoised])
        stage_sigma = s * math.exp(-reach)
        denoised, node = call(stage_x, stage_sigma), reach
    return _combine(x, math.exp(-h), line_weights(h, node), [start_denoised, denoised]), stage_x, stage_sigma, denoised


def _check_staged_inputs(name: str, order: int, sigma_floor: float) -> None:
    if order not in STAGE_FRACTIONS:
        raise ValueError(f"{name} order must be 1, 2 or 3, got {order}")
    if not 0 < sigma_floor < 1:
        raise ValueError(f"{name} sigma_floor must be between 0 and 1, got {sigma_floor}")


def finish_to_zero(call, x: torch.Tensor, s: float, start_denoised: torch.Tensor, order: int,
                   sigma_floor: float) -> torch.Tensor:
    """The image from x at sigma s, the start's denoised prediction in hand: a staged step down to
    sigma_floor, then the sliver to 0 along the last stage's velocity (x - D) / sigma, without a call.
    At or below sigma_floor (within AT_FLOOR), the denoised prediction is the image."""
    if s <= sigma_floor * (1 + AT_FLOOR):
        return start_denoised
    x_end, stage_x, stage_sigma, denoised = staged_step(call, x, s, sigma_floor, start_denoised, order)
    velocity = torch.sub(stage_x, denoised).div_(stage_sigma)
    return x_end.sub_(velocity, alpha=sigma_floor)


def solve_exp_singlestep(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    order: int = 3,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    breakpoints: Sequence[float] = (),
    sigma_floor: float = 1e-3,
):
    """`order` model calls per step of the given sigmas (STAGE_FRACTIONS). A final interval to sigma 0
    runs to sigma_floor (or, when the last sigma is already at or below it, the last call's denoised
    prediction is the image) and finishes along the last stage's velocity. Breakpoints (sigmas where
    the model's output jumps) need nothing here: no step uses values from before the one it is in.
    Returns (latent, stats)."""
    _check_staged_inputs("exp_singlestep", order, sigma_floor)
    del breakpoints  # part of the fixed-schedule solvers' common signature
    stats = SolveStats(f"exp_singlestep (order {order})")
    started = time.perf_counter()
    call = _counted_calls(denoiser, stats, on_model_call)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == s:
            continue
        denoised = call(x, s)
        if s_next <= 0:
            x = denoised = finish_to_zero(call, x, s, denoised, order, sigma_floor)
        else:
            x, _, _, denoised = staged_step(call, x, s, s_next, denoised, order)
        stats.accepted += 1
        if on_step is not None:
            on_step(StepInfo(max(s_next, 0.0), x, denoised, (i + 1) / (len(sigmas) - 1), stats))
    stats.final_sigma = max(sigmas[-1], 0.0)
    stats.seconds = time.perf_counter() - started
    return x, stats


def solve_exp_multistep_staged_end(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    order: int = 3,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    breakpoints: Sequence[float] = (),
    sigma_floor: float = 1e-3,
):
    """exp_multistep (samplers/multistep.py: one model call per sigma, predictor order `order`) down
    to the last sigma above 0, then the interval from there to sigma 0 as one exp_singlestep step of
    the same order (order - 1 more calls, down to sigma_floor in log sigma) where exp_multistep jumps
    to the last denoised prediction: n + order - 1 calls on n steps, one more where exp_multistep
    stages its step onto that sigma. On a short schedule that interval spans most of log sigma and
    holds most of the error; the steps before it are where each image settles on what it becomes,
    which the multistep history follows at one call a step. Returns (latent, stats)."""
    _check_staged_inputs("exp_multistep_staged_end", order, sigma_floor)

    def finish(call, x_last, sigma_last, denoised):
        return finish_to_zero(call, x_last, sigma_last, denoised, order, sigma_floor)

    return _solve_fixed_multistep(LOG_SIGMA_FORM, denoiser, x, sigmas, order, on_step, on_model_call, breakpoints,
                                  finish_to_zero=finish, name="exp_multistep_staged_end")
