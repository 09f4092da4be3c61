"""Adaptive Adams predictor-corrector for the probability-flow ODE: one model call per step.

In log time lambda = -log(sigma) the ODE dx/dsigma = (x - D)/sigma reads dx/dlambda = D - x, so over a
step of length h

    x(lambda + h) = e^-h x(lambda) + integral_0^h e^(s - h) D(lambda + s) ds.

Adams methods replace D by the polynomial in lambda through its latest values and integrate the
exponential weight exactly (DPM-Solver++ multistep and UniPC are this family on a fixed schedule).
Each step:

- predictor: the polynomial through the last k accepted D (order k, up to 3; k = 1 is DDIM);
- one model call at the predicted point;
- corrector: the polynomial through those and the new D (order k + 1).

The corrector's value is kept. The difference between the two estimates the predictor's local error,
which drives the step size as in the Runge-Kutta solver (per-image RMS, max over the batch). The new
D, taken at the predicted point as UniPC does, joins the history; a rejected step only costs its
one call. Where Runge-Kutta pairs pay two to six calls per step for their error estimate, this pays
one.

The same predictor-corrector also runs in sigma itself on the velocity v = (x - D) / sigma, where
a step is x(sigma + h) = x(sigma) + sum(w_j v_j) with the classical Adams weights: flow_adams_pc
(adaptive) and flow_multistep (on a given schedule). Along a rectified flow's nearly straight paths v
barely changes, and on bench/bench_samplers.py these need the fewest calls of our methods on the
problems that are not ours; log sigma keeps the advantage where paths bend hard near sigma 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .ode import (
    AdaptiveSettings,
    Denoiser,
    SolveStats,
    StepControl,
    StepInfo,
    Switching,
    across_located_switches,
    budget_spent_message,
    check_model_output,
    first_step,
    left_out_of_error,
    model_output_not_finite,
    size_at,
    step_collapsed,
    switches_inside,
    too_many_switch,
    travelled,
)

# Predictor order (the corrector is one higher): 3 from rtol 1e-2 down, 2 above, where order 3 was
# measured to cost more calls (bench/gmm.py, two mixtures). A quadratic through the last three
# values, extrapolated over a step more than twice the last one, is unstable: such steps drop to order 2.
ORDER_3_BELOW_RTOL = 10**-1.75
MAX_STEP_RATIO_FOR_ORDER_3 = 2.0
# Step-size controller: a step costs one call, and so does a rejection. Growth past 5x per step and
# the Runge-Kutta safety factor 0.9 were measured (bench/gmm.py, on two mixtures) to draw more
# rejections than they saved; at 0.5 a solve typically has one rejection, and fewer calls.
SAFETY = 0.5
# A half-precision network's rounding keeps the error ratio up on its own, where 0.5 shrinks every
# accepted step until the budget is spent. bfloat16 needs 0.9 for the steps to hold; float16 rounds
# about 8x finer, and there 0.9 lets a smooth model's solve land visibly off where 0.7 does not
# (README: models that compute in bfloat16 or float16).
HALF_PRECISION_SAFETY = {"float16": 0.7, "bfloat16": 0.9}
MAX_FACTOR = 5.0
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(12)


def _lagrange_integrals(nodes: list[float], start: float, end: float, weight) -> list[float]:
    """integral_start^end weight(t) L_j(t) dt for the Lagrange basis L_j on `nodes`, by 12-point
    Gauss-Legendre (vectorised: the multistep solvers call this twice per model call)."""
    if end == start:  # nothing to integrate; the Gauss points would sit on a node
        return [0.0] * len(nodes)
    nodes_ = np.asarray(nodes, dtype=np.float64)
    half = (end - start) / 2
    t = half * _GAUSS_NODES + (start + end) / 2
    quad = half * _GAUSS_WEIGHTS * weight(t)
    # L_j = prod_{m != j} (t - node_m) / (node_j - node_m). The Gauss points lie strictly inside the
    # step and the nodes do not (each is a past point or an end of the step), so dividing the full
    # product by (t - node_j) is safe.
    to_nodes = t[None, :] - nodes_[:, None]
    spread = nodes_[:, None] - nodes_[None, :]
    np.fill_diagonal(spread, 1.0)
    basis = np.prod(to_nodes, axis=0)[None, :] / to_nodes / np.prod(spread, axis=1)[:, None]
    return (basis @ quad).tolist()


def exponential_adams_weights(nodes: list[float], start: float, end: float) -> list[float]:
    """w_j = integral_start^end e^(lambda - end) L_j(lambda) dlambda, L_j the Lagrange basis on `nodes`.

    The integrand is entire, so 12-point Gauss-Legendre is exact to rounding for the step lengths the
    controller allows (tested against the closed forms for one and two nodes)."""
    return _lagrange_integrals(nodes, start, end, lambda lam: np.exp(lam - end))


def adams_weights(nodes: list[float], start: float, end: float) -> list[float]:
    """w_j = integral_start^end L_j(s) ds, L_j the Lagrange basis on `nodes`: the classical variable-step
    Adams weights (the quadrature is exact for these polynomials)."""
    return _lagrange_integrals(nodes, start, end, np.ones_like)


def _combine(start: torch.Tensor, scale: float, weights: list[float], denoised: list[torch.Tensor],
             out: torch.Tensor | None = None) -> torch.Tensor:
    """scale * start + sum(w_j D_j), in elementwise passes (memory-bound, as in ode._combine)."""
    out = torch.mul(start, scale, out=out)
    for w, d in zip(weights, denoised):
        out.add_(d, alpha=w)
    return out


class _ErrorNorm:
    """ode.error_ratio (per-image RMS of err / (atol + rtol max(|x_old|, |x_new|)), each sized at its
    sigma, max over the batch) in fewer passes, with |x| of the accepted point kept for the next step and scratch
    buffers reused: this runs on every model call, where a Runge-Kutta pair runs it once a step."""

    def __init__(self, x: torch.Tensor, rtol: float, atol: float, sigma: float = 1.0):
        self.rtol, self.offset = rtol, atol / rtol
        self.abs_old, self.abs_new, self.scale = x.abs(), torch.empty_like(x), torch.empty_like(x)
        if size_at(sigma) != 1.0:
            self.abs_old.mul_(size_at(sigma))
        self.root_n = math.sqrt(x[0].numel())

    def ratio(self, err: torch.Tensor, x_new: torch.Tensor, left_out: torch.Tensor | None = None,
              sigma_new: float = 1.0) -> float:
        """Consumes `err`. left_out: values (a boolean mask broadcastable to err) the RMS leaves out.
        Latents are sized at their sigmas (ode.size_at), the error at sigma_new."""
        torch.abs(x_new, out=self.abs_new)
        size = size_at(sigma_new)
        if size != 1.0:
            self.abs_new.mul_(size)
        torch.maximum(self.abs_old, self.abs_new, out=self.scale).add_(self.offset)
        err.div_(self.scale)
        # the error sized at sigma_new: the norm is linear in it, so the size multiplies the result
        if left_out is None:
            return size * float(torch.linalg.vector_norm(err.flatten(1), dim=1).max()) / (self.rtol * self.root_n)
        kept = (~left_out).expand(err.shape)
        norms = torch.linalg.vector_norm(err.masked_fill_(~kept, 0.0).flatten(1), dim=1)
        counts = kept.flatten(1).sum(dim=1).clamp(min=1).to(norms.dtype)
        return size * float((norms / counts.sqrt()).max()) / self.rtol

    def accept(self):
        self.abs_old, self.abs_new = self.abs_new, self.abs_old


def _counted_calls(denoiser: Denoiser, stats: SolveStats, on_model_call: Callable[[], None] | None):
    """denoiser(x, sigma) with ComfyUI's interrupt check first, the call counted and its output checked."""

    def call(x, sigma):
        if on_model_call is not None:
            on_model_call()  # ComfyUI's interrupt check
        stats.model_calls += 1
        denoised = denoiser(x, sigma)
        check_model_output(stats.method, denoised, sigma, stats.model_calls)
        return denoised

    return call


@dataclass(frozen=True)
class _AdamsForm:
    """What the predictor-corrector integrates, in which time: x(t + h) = decay(h) x(t) + sum_j w_j f_j,
    the w_j from `weights` over the polynomial through the f_j (values derived from the model)."""

    name: str  # the adaptive method
    fixed_name: str  # the method on a given schedule
    time: Callable[[float], float]  # t(sigma)
    sigma_at: Callable[[float], float]
    weights: Callable[[list[float], float, float], list[float]]
    decay: Callable[[float], float]  # the factor on x over a step of length h
    value: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # f from (x, denoised, sigma); never x itself
    max_step_ratio_for_order_3: float  # the adaptive solver's rule
    usable_order: Callable[[int, list[float], float], int]  # the fixed-schedule solver's rule
    # On a given schedule, the interval to sigma 0: the last denoised prediction (log sigma cannot
    # reach 0), or an ordinary predictor step.
    jumps_to_denoised_at_zero: bool
    # On a given schedule, the step onto the last sigma before 0, when longer than this times the one
    # before, gets a stage at its midpoint (one more call) instead of the history's extrapolation (inf: never).
    long_step_ratio: float = math.inf


def solve_adams_pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    settings: AdaptiveSettings | None = None,
    max_order: int | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
    switching: Switching | None = None,
):
    """Integrate from sigma_start to sigma_end (both > 0; down to sample, up to invert). Returns (x at
    sigma_end, denoised prediction there, stats), as solve_adaptive does; the denoised prediction is
    the last model call. The exponential weights hold for steps of either sign.
    Of `settings`, rtol, atol, max_model_calls, min_factor and model_precision apply; SAFETY (or
    HALF_PRECISION_SAFETY's) and MAX_FACTOR replace the Runge-Kutta safety and growth limit."""
    settings = settings or AdaptiveSettings()
    if max_order is None:
        max_order = 3 if settings.rtol < ORDER_3_BELOW_RTOL else 2
    return _solve_adaptive_multistep(LOG_SIGMA_FORM, denoiser, x, sigma_start, sigma_end, settings, max_order,
                                     on_step, on_model_call, log, switching)


def solve_flow_adams_pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    settings: AdaptiveSettings | None = None,
    max_order: int = 3,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
    switching: Switching | None = None,
):
    """adams_pc's predictor-corrector and controller on the velocity v = (x - D) / sigma in sigma itself
    (flow time), as flow_multistep does on a given schedule: along a rectified flow's nearly straight
    paths v barely changes, so its steps grow long where adams_pc's log-sigma steps cannot (the same
    distance in sigma is ever longer in log sigma towards 0). Same interface and returns as
    solve_adams_pc."""
    return _solve_adaptive_multistep(SIGMA_FORM, denoiser, x, sigma_start, sigma_end, settings or AdaptiveSettings(),
                                     max_order, on_step, on_model_call, log, switching)


def _solve_adaptive_multistep(form: _AdamsForm, denoiser, x, sigma_start, sigma_end, settings, max_order, on_step,
                              on_model_call, log, switching=None):
    if not (sigma_start > 0 and sigma_end > 0 and sigma_end != sigma_start):
        raise ValueError(f"need two different sigmas above 0, got {sigma_start} and {sigma_end}")
    name = form.name
    if not settings.rtol > 0:
        raise ValueError(f"{name} needs rtol > 0, got {settings.rtol}")  # the node's range ensures it
    stats = SolveStats(name)
    started = time.perf_counter()
    call_at_sigma = _counted_calls(denoiser, stats, on_model_call)

    t, t_end = form.time(sigma_start), form.time(sigma_end)
    direction = 1.0 if t_end > t else -1.0
    denoised = call_at_sigma(x, sigma_start)
    history_t, history_f = [t], [form.value(x, denoised, sigma_start)]
    norm = _ErrorNorm(x, settings.rtol, settings.atol, sigma_start)
    err_buffer = torch.empty_like(x)
    safety = HALF_PRECISION_SAFETY.get(settings.model_precision, SAFETY)
    control = StepControl(first_step(form, sigma_start, x, denoised, 1, settings.rtol, settings.first_log_step),
                          safety, settings.min_factor, MAX_FACTOR)

    while direction * (t_end - t) > 0:
        remaining = direction * (t_end - t)
        if settings.calls_before + stats.model_calls + 1 > settings.max_model_calls:
            break
        step, last = control.propose(remaining)
        if step <= 1e-10:
            raise step_collapsed(name, form.sigma_at(t), stats.model_calls)
        t_new = t_end if last else t + direction * step
        sigma_new = form.sigma_at(t_new)
        k = min(max_order, len(history_t))
        if k == 3 and step > form.max_step_ratio_for_order_3 * abs(history_t[-1] - history_t[-2]):
            k = 2
        nodes, known = history_t[-k:], history_f[-k:]
        w_pred = form.weights(nodes, t, t_new)
        w_corr = form.weights([*nodes, t_new], t, t_new)
        # values switching inside the step: known before any call (ode.too_many_switch)
        in_step, intervals = switches_inside(switching, form.sigma_at, t, t_new, x)
        if in_step is not None and too_many_switch(in_step, intervals):
            stats.rejected += 1
            control.reject(step, 2.0 ** (1.0 / (k + 1)), 1.0 / (k + 1))  # about half the step
            continue
        x_pred = _combine(x, form.decay(t_new - t), w_pred, known)
        # the polynomials span the nodes they use: a value that switched anywhere there is predicted
        # from the last node alone and corrected with the trapezoid to the new one, and left out of the error
        switched = switching(form.sigma_at(nodes[0]), sigma_new) if switching is not None else None
        if switched is not None and not bool(switched.any()):
            switched = None
        if switched is not None and k > 1:
            low = _combine(x, form.decay(t_new - t), form.weights([t], t, t_new), known[-1:])
            x_pred = torch.where(switched, low, x_pred)
        d_new = call_at_sigma(x_pred, sigma_new)
        f_new = form.value(x_pred, d_new, sigma_new)
        # corrector - predictor: the decay(h) x terms cancel, so the difference costs k + 1 terms
        err = _combine(f_new, w_corr[-1], [c - p for c, p in zip(w_corr, w_pred)], known, out=err_buffer)
        x_corr = torch.add(x_pred, err)  # new memory: the model and the callbacks may hold x_pred and x
        if switched is not None:
            trapezoid = _combine(x, form.decay(t_new - t), form.weights([t, t_new], t, t_new), [known[-1], f_new])
            x_corr = torch.where(switched, trapezoid, x_corr)
            if in_step is not None:
                located = across_located_switches(switching, form.sigma_at, t, t_new, x, denoised, d_new, intervals)
                x_corr = torch.where(in_step, located, x_corr)
                # the flow form's velocity read where those values now are (the model's prediction kept)
                f_new = torch.where(in_step, form.value(x_corr, d_new, sigma_new), f_new)
        ratio = norm.ratio(err, x_corr, left_out_of_error(switched), sigma_new)
        if not math.isfinite(ratio):
            raise model_output_not_finite(name, sigma_new, f"call {stats.model_calls}")
        exponent = 1.0 / (k + 1)
        if ratio <= 1.0:
            stats.accepted += 1
            t, x, denoised = t_new, x_corr, d_new
            norm.accept()
            history_t.append(t)
            history_f.append(f_new)
            del history_t[:-max_order], history_f[:-max_order]  # keep what the next predictor uses
            control.accept(step, ratio, exponent)
            if on_step is not None:
                sigma = form.sigma_at(t)
                on_step(StepInfo(sigma, x, d_new, travelled(sigma_start, sigma_end, sigma), stats))
        else:
            stats.rejected += 1
            control.reject(step, ratio, exponent)

    if direction * (t_end - t) > 0:
        # Budget spent: one DDIM step to the end on the last denoised prediction, as solve_adaptive does;
        # that prediction is also the one returned (the step holds it constant).
        stats.budget_exhausted = True
        sigma = form.sigma_at(t)
        lam, lam_end = -math.log(sigma), -math.log(sigma_end)
        x = _combine(x, math.exp(-(lam_end - lam)), [1.0 - math.exp(-(lam_end - lam))], [denoised])
        if log is not None:
            log(budget_spent_message(name, settings.max_model_calls, sigma))
    stats.final_sigma = sigma_end
    stats.seconds = time.perf_counter() - started
    return x, denoised, stats


# On a given schedule, a polynomial through the last values extrapolated over a step much longer than
# the last ones amplifies their errors: such a step drops to a lower order (the limit for order 3 is
# the adaptive solver's; order 2 allows what its controller's growth allows).
MAX_STEP_RATIO_FOR_ORDER = {3: MAX_STEP_RATIO_FOR_ORDER_3, 2: MAX_FACTOR}
# flow_multistep lowers order 3 only, and to 2 (SIGMA_FORM below says why)
MAX_STEP_RATIO_FOR_FLOW_ORDER = {3: MAX_STEP_RATIO_FOR_ORDER_3}


def _order_for_step(order: int, history: list[float], t_new: float, max_ratio: dict) -> int:
    """At most `order` and the history's length, lowered while the step is longer than max_ratio[k]
    times the shortest gap between the k nodes it would use (orders missing from max_ratio stay)."""
    k = min(order, len(history))
    step = abs(t_new - history[-1])
    while k in max_ratio and step > max_ratio[k] * min(abs(a - b) for a, b in zip(history[-k:], history[-k + 1:])):
        k -= 1
    return k


def usable_order(order: int, history_lam: list[float], lam_new: float) -> int:
    """exp_multistep's predictor order: lowered by MAX_STEP_RATIO_FOR_ORDER, down to 1."""
    return _order_for_step(order, history_lam, lam_new, MAX_STEP_RATIO_FOR_ORDER)


def usable_flow_order(order: int, history: list[float], t_new: float) -> int:
    """flow_multistep's predictor order: 3 only while the step is at most MAX_STEP_RATIO_FOR_ORDER_3
    times the shortest gap between the three nodes; otherwise 2 (never lower)."""
    return _order_for_step(order, history, t_new, MAX_STEP_RATIO_FOR_FLOW_ORDER)


# exp_multistep: the step onto the last sigma before 0, when more than this many times the one before
# (in log sigma), is taken in two stages, as RES4LYF's res_2s and DPM-Solver-2 take every step: the
# midpoint predicted from the step's start alone, the end from the start and the midpoint, then the
# usual call and corrector. ComfyUI's `normal`, `ddim_uniform` and `kl_optimal` schedules end with
# such a step down to their smallest sigma. Measured on bench/problems.py's three problems and three
# held-out mixtures (--gmm): at 5, `normal` at 20-24 steps still extrapolated it at order 2
# (mmdit-digits 9.1e-2 where the stage gives 9.1e-3 for one more call). Earlier steps are left to the
# history: staging them as well cost calibrated schedules (which place long steps where the model is
# smooth) calls for no gain.
LONG_STEP_RATIO = 3.0

# adams_pc and exp_multistep: log sigma, the denoised prediction, exponential weights (DPM-Solver++'s
# family).
LOG_SIGMA_FORM = _AdamsForm("adams_pc", "exp_multistep", lambda sigma: -math.log(sigma), lambda lam: math.exp(-lam),
                            exponential_adams_weights, lambda h: math.exp(-h), lambda x, d, sigma: d,
                            MAX_STEP_RATIO_FOR_ORDER_3, usable_order, jumps_to_denoised_at_zero=True,
                            long_step_ratio=LONG_STEP_RATIO)
# flow_adams_pc and flow_multistep: sigma itself, the velocity (x - D) / sigma, plain Adams weights.
# flow_multistep drops order 3 to 2 (never to 1) on a step more than twice the history's shortest gap:
# a cubic extrapolated over `linear_quadratic`'s jump from its linear part ended 14 (RMS) from the
# image on gmm-wide at 6 steps (order 2: 0.30), and `beta` at 6-12 steps sent draws to other modes;
# on `beta` from 15 steps the rule changes errors by a few per cent (bench/problems.py, six mixtures
# and mmdit-digits). Dropping to order 1 as well sent gmm-wide draws to other modes on `beta` at
# 15-18 steps; in the adaptive flow_adams_pc a rule changed calls and errors little either way.
SIGMA_FORM = _AdamsForm("flow_adams_pc", "flow_multistep", lambda sigma: sigma, lambda sigma: sigma, adams_weights,
                        lambda h: 1.0, lambda x, d, sigma: torch.sub(x, d).div_(sigma), math.inf, usable_flow_order,
                        jumps_to_denoised_at_zero=False)


def solve_exp_multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    order: int = 3,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    breakpoints: Sequence[float] = (),
):
    """The Adams predictor-corrector above on a given schedule: one model call per sigma above 0, and one
    more when the step onto the last of them is much longer than the one before.

    Each step predicts with the polynomial through the last `order` denoised predictions, calls the
    model at the predicted point and corrects with the polynomial through those and the new one, as
    UniPC does (Zhao et al. 2023, arXiv 2302.04867, with the exponential weights integrated exactly
    as in DPM-Solver++, Lu et al. 2022, arXiv 2211.01095); a step longer than twice the shortest gap
    in the history it would use drops to order 2 (usable_order), and the step onto the last sigma
    before 0 (or, on a schedule ending above 0, its last step), when longer than LONG_STEP_RATIO times
    the one before, takes a second stage at its midpoint (one more model call) in place of the extrapolation, as the two-stage exponential
    integrators do (RES, Zhang et al. 2023, arXiv 2308.02157). A final interval to sigma 0 returns
    the denoised prediction of the last call; a schedule ending above 0 returns the last predicted
    latent (no call is left for its corrector). A step ending just past one of `breakpoints` (sigmas
    where the model's output jumps) restarts the history (_ends_past_breakpoint). Returns (latent, stats)."""
    return _solve_fixed_multistep(LOG_SIGMA_FORM, denoiser, x, sigmas, order, on_step, on_model_call, breakpoints)


def solve_flow_multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    order: int = 2,
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    breakpoints: Sequence[float] = (),
):
    """Adams predictor-corrector on the velocity v = (x - D) / sigma in sigma itself (flow time), on
    a given schedule: one model call per sigma above 0, and one more (a midpoint) on a step to 0 with
    no history before it at order 2 or 3.

    For a rectified flow, x_sigma = (1 - sigma) x_0 + sigma noise, so v is the flow's velocity
    noise - x_0, constant along a straight path; a low-order polynomial in sigma follows it well,
    and the last interval down to sigma 0 is an ordinary step (no jump from the last sigma to the
    denoised prediction). Each step predicts with the Adams-Bashforth polynomial through the last
    `order` velocities, calls the model at the predicted point and corrects with the Adams-Moulton
    polynomial through those and the new one, reusing that call as UniPC does (Zhao et al. 2023,
    arXiv 2302.04867); the weights are the classical variable-step ones (Hairer, Norsett and
    Wanner, Solving ODEs I, III.5). The interval to sigma 0 is predicted only (no call at sigma 0).
    A schedule ending above 0 returns the last predicted latent. A step ending just past one of
    `breakpoints` restarts the history (_ends_past_breakpoint). Returns (latent, stats)."""
    return _solve_fixed_multistep(SIGMA_FORM, denoiser, x, sigmas, order, on_step, on_model_call, breakpoints)


# A fixed schedule's step "ends at" a breakpoint when its end is this close past it (relative), as the
# Calibrated Schedule puts it (calibrate.just_below_breakpoints, BREAKPOINT_GAP below).
ENDS_AT_BREAKPOINT = 1e-4


def _ends_past_breakpoint(breakpoints: Sequence[float], s: float, s_next: float) -> bool:
    """Whether the step from s to s_next ends just past a breakpoint (a sigma where the model's output
    jumps: a prompt, ControlNet, hook keyframe or patch switching). Such a step is the predictor alone,
    on the history from before the jump, and the history starts again from the call at its end: a
    corrector, or a later polynomial, through values from both sides of a jump extrapolates the jump.
    A breakpoint inside a step is left alone: a first-order step across it measured up to 34 times worse
    than the polynomial over it, and worse wherever nothing changes there (README: "Fixed schedules and
    breakpoints")."""
    return any(min(s, s_next) < b < max(s, s_next) and abs(s_next - b) <= ENDS_AT_BREAKPOINT * b for b in breakpoints)


def _solve_fixed_multistep(form: _AdamsForm, denoiser, x, sigmas, order, on_step, on_model_call, breakpoints=(),
                           finish_to_zero=None, name=None):
    """finish_to_zero(call, x, sigma, denoised) -> image: the interval from the last sigma to 0 of a
    form that jumps to the denoised prediction there, in place of the jump. name: the method's, for
    its stats (form.fixed_name)."""
    name = name or form.fixed_name
    if order not in (1, 2, 3):
        raise ValueError(f"{name} order must be 1, 2 or 3, got {order}")
    stats = SolveStats(f"{name} (order {order})")
    started = time.perf_counter()
    call = _counted_calls(denoiser, stats, on_model_call)

    history_t: list[float] = []
    history_f: list[torch.Tensor] = []
    denoised = None  # the last call's
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == s:
            continue
        if not history_f:
            denoised = call(x, s)
            history_t.append(form.time(s))
            history_f.append(form.value(x, denoised, s))
        t = history_t[-1]
        if s_next <= 0 and form.jumps_to_denoised_at_zero:
            x = denoised = denoised if finish_to_zero is None else finish_to_zero(call, x, s, denoised)
        else:
            t_new = form.time(max(s_next, 0.0))
            # only the step onto the last sigma before 0 (the image is that call's denoised prediction)
            # and the last step of a schedule ending above 0 (no call is left for its corrector): no
            # later step corrects what these get wrong
            onto_last = (i + 2 == len(sigmas) - 1 and sigmas[-1] <= 0) or (i + 1 == len(sigmas) - 1 and s_next > 0)
            restart = s_next > 0 and _ends_past_breakpoint(breakpoints, s, s_next)
            staged = not restart and onto_last and len(history_t) >= 2 \
                and abs(t_new - t) > form.long_step_ratio * abs(t - history_t[-2])
            # an integration step to sigma 0 with one value in hand (a one-step schedule, such as the
            # second pass of a KSamplerAdvanced split at the last step, or a restart just before it)
            # would be Euler's: a midpoint call makes it second order
            staged = staged or (s_next <= 0 and order >= 2 and len(history_t) == 1)
            if staged:
                t_mid = (t + t_new) / 2
                sigma_mid = form.sigma_at(t_mid)
                x_mid = _combine(x, form.decay(t_mid - t), form.weights([t], t, t_mid), history_f[-1:])
                f_mid = form.value(x_mid, call(x_mid, sigma_mid), sigma_mid)
                nodes, known = [t, t_mid], [history_f[-1], f_mid]
            else:
                k = form.usable_order(order, history_t, t_new)
                nodes, known = history_t[-k:], history_f[-k:]
            x_pred = _combine(x, form.decay(t_new - t), form.weights(nodes, t, t_new), known)
            if s_next <= 0 or i + 1 == len(sigmas) - 1:  # no call left for the corrector
                x = x_pred
                if s_next <= 0:
                    denoised = x
            elif restart:
                denoised, x = call(x_pred, s_next), x_pred
                history_t[:], history_f[:] = [t_new], [form.value(x, denoised, s_next)]
            else:
                denoised = call(x_pred, s_next)
                f_new = form.value(x_pred, denoised, s_next)
                x = _combine(x, form.decay(t_new - t), form.weights([*nodes, t_new], t, t_new), [*known, f_new])
                if staged:
                    history_t.append(t_mid)
                    history_f.append(f_mid)
                history_t.append(t_new)
                history_f.append(f_new)
                del history_t[:-order], history_f[:-order]
        stats.accepted += 1
        if on_step is not None:
            on_step(StepInfo(max(s_next, 0.0), x, denoised, (i + 1) / (len(sigmas) - 1), stats))
    stats.final_sigma = max(sigmas[-1], 0.0)
    stats.seconds = time.perf_counter() - started
    return x, stats
