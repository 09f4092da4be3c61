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
methods jump to the last denoised prediction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from .multistep import _combine, _counted_calls
from .ode import Denoiser, SolveStats, StepInfo

# Where each order calls the model, as fractions of the step in log sigma (after its start): DPM-Solver's
# r1 = 1/2 for order 2 and r1, r2 = 1/3, 2/3 for order 3.
STAGE_FRACTIONS = {1: (), 2: (1 / 2,), 3: (1 / 3, 2 / 3)}
# Below this step (in log sigma) the weights' closed forms lose digits to cancellation: a series instead.
SERIES_BELOW = 1e-3


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
    if order not in STAGE_FRACTIONS:
        raise ValueError(f"exp_singlestep order must be 1, 2 or 3, got {order}")
    if not 0 < sigma_floor < 1:
        raise ValueError(f"exp_singlestep sigma_floor must be between 0 and 1, got {sigma_floor}")
    del breakpoints  # part of the fixed-schedule solvers' common signature
    stats = SolveStats(f"exp_singlestep (order {order})")
    started = time.perf_counter()
    call = _counted_calls(denoiser, stats, on_model_call)
    fractions = STAGE_FRACTIONS[order]
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == s:
            continue
        denoised = call(x, s)
        if s_next <= 0 and s <= sigma_floor:
            x = denoised
        else:
            end = max(s_next, sigma_floor) if s_next <= 0 else s_next
            h = math.log(s / end)  # negative on a rising schedule: the weights hold for either sign
            start_denoised, stage_x, stage_sigma, node = denoised, x, s, None
            for fraction in fractions:
                reach = fraction * h
                stage_x = _combine(x, math.exp(-reach), line_weights(reach, node), [start_denoised, denoised])
                stage_sigma = s * math.exp(-reach)
                denoised, node = call(stage_x, stage_sigma), reach
            x_end = _combine(x, math.exp(-h), line_weights(h, node), [start_denoised, denoised])
            if s_next <= 0:
                # the sliver from sigma_floor to 0 along the last stage's velocity (x - D) / sigma
                velocity = torch.sub(stage_x, denoised).div_(stage_sigma)
                x = x_end.sub_(velocity, alpha=end)
                denoised = x  # at sigma 0 the latent is its own prediction: the preview is the image
            else:
                x = x_end
        stats.accepted += 1
        if on_step is not None:
            on_step(StepInfo(max(s_next, 0.0), x, denoised, (i + 1) / (len(sigmas) - 1), stats))
    stats.final_sigma = max(sigmas[-1], 0.0)
    stats.seconds = time.perf_counter() - started
    return x, stats
