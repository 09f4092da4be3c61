"""Runge-Kutta solvers for the probability-flow ODE of a denoiser (pure torch, no ComfyUI).

ComfyUI's samplers see a denoiser D(x, sigma) and the ODE dx/dsigma = (x - D)/sigma, which holds
for rectified-flow (CONST) models and for eps/v models in k-diffusion's parametrisation alike.

Two forms of that ODE can be integrated:

- "data" (default): y = x/sigma over u = 1/sigma, so dy/du = D(x, sigma). The right-hand side is
  the denoised prediction itself: bounded and smooth as sigma -> 0, where the velocity form turns
  stiff, and free of the (x - D)/sigma cancellation. Euler in this form is DDIM; the last stage of
  an FSAL method is D at the accepted point, so previews and the final denoised output cost no
  extra model call.
- "velocity": x over sigma with dx/dsigma = (x - D)/sigma, what ComfyUI-ODE and RK-Sampler do.

The state stays on the model's device in the latent's dtype; step arithmetic is in Python floats.
The error norm is an RMS per image, maxed over the batch, so the whole batch shares one step
(sigma-keyed ComfyUI features such as timestep-ranged conds stay consistent).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .tableaux import ButcherTableau

ODE_FORMS = ("data", "velocity")
# The first step, as a step in log(sigma): FIRST_STEP_SCALE times the distance over which x would
# change by its own size (rms(x) / rms(dx/dlog sigma), from the first model call, so no extra call),
# shrunk for tolerances tighter than FIRST_STEP_RTOL like a step of the method's order. Measured on
# bench/gmm.py against Hairer's selection (which costs a probe call) and against fixed first steps:
# as good or better at every error level, and one call cheaper.
FIRST_STEP_SCALE = 0.1
FIRST_STEP_RTOL = 10 ** -1.5
FIRST_STEP_BOUNDS = (1e-4, 0.5)


class SolverError(RuntimeError):
    """A solve that cannot give a usable image; the message names the setting to change."""


class ModelOutputNotFinite(SolverError):
    pass


class StepSizeCollapsed(SolverError):
    pass


# A denoised prediction larger than this (times sigma, above 1) is no latent: VAE latents live within
# about +-10, and fp16 overflows at 65504. A broken model, not a hard image.
MAX_DENOISED = 1e5


def bad_images(t: torch.Tensor, limit: float | None = None) -> list[int]:
    """Batch indices of images with NaN/inf (or, with limit, a value beyond +-limit)."""
    flat = t.detach().flatten(1)
    bad = ~torch.isfinite(flat)
    if limit is not None:
        bad |= flat.abs() > limit
    return torch.nonzero(bad.any(dim=1)).flatten().tolist()


def describe_images(bad: list[int], batch: int) -> str:
    """'image 3 of 8' / 'images 0, 1 of 2' (batch indices from 0, as Latent From Batch counts)."""
    shown = ", ".join(str(i) for i in bad[:8]) + (f", ... ({len(bad)} in all)" if len(bad) > 8 else "")
    return f"{'image' if len(bad) == 1 else 'images'} {shown} of {batch}"


def check_model_output(name: str, denoised: torch.Tensor, sigma: float, call: int):
    """Raise on a denoised prediction with NaN/inf or absurd values: one pass (aminmax propagates NaN),
    the per-image search only on failure. Run on every model call, so a fault stops at its call."""
    low, high = torch.stack(torch.aminmax(denoised.detach())).tolist()
    limit = MAX_DENOISED * max(1.0, sigma)  # x0 predictions at huge sigmas (zero-terminal SNR) are less sure
    if -limit <= low and high <= limit:
        return
    finite = math.isfinite(low) and math.isfinite(high)
    bad = bad_images(denoised, limit if finite else None)
    raise model_output_not_finite(name, sigma, f"call {call}, {describe_images(bad, denoised.shape[0])}",
                                  out_of_range=finite)


# ---------------------------------------------------------------------------------------------
# ODE forms: maps between (sigma, x) and the integrator's (time, state).


class DataForm:
    name = "data"

    @staticmethod
    def time(sigma):
        return 1.0 / sigma

    @staticmethod
    def sigma(t):
        return 1.0 / t

    @staticmethod
    def state(x, sigma):
        return x / sigma

    @staticmethod
    def x(y, t):
        return y / t

    @staticmethod
    def derivative(denoised, x, sigma):
        return denoised


class VelocityForm:
    name = "velocity"

    @staticmethod
    def time(sigma):
        return sigma

    @staticmethod
    def sigma(t):
        return t

    @staticmethod
    def state(x, sigma):
        return x

    @staticmethod
    def x(y, t):
        return y

    @staticmethod
    def derivative(denoised, x, sigma):
        return (x - denoised) / sigma


FORMS = {"data": DataForm, "velocity": VelocityForm}


# ---------------------------------------------------------------------------------------------


@dataclass
class SolveStats:
    method: str
    model_calls: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    budget_exhausted: bool = False
    final_sigma: float = float("nan")

    def summary(self) -> str:
        text = (f"{self.method}: {self.model_calls} model calls, {self.accepted} accepted and "
                f"{self.rejected} rejected steps, {self.seconds:.2f} s")
        return text + (" (budget ran out)" if self.budget_exhausted else "")


@dataclass
class StepInfo:
    """What the solver reports after each accepted step."""

    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor
    progress: float  # 0 at the first sigma, 1 at the last: steps done (fixed), log-sigma travelled (adaptive)
    stats: SolveStats = field(repr=False)


Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
# switching(sigma_a, sigma_b): where the model's output changes form between two sigmas (a boolean
# tensor broadcastable to the latent), or None where it does not. Inpainting with ComfyUI's
# Differential Diffusion repaints each pixel only from the sigma its mask value reaches: before, the
# model's prediction there is the given image; after, the model's own. A step across that switch has
# an error no shorter step removes (the output jumps), so the error control leaves those values out:
# each switch then costs what it costs a fixed-step sampler, one step's timing, instead of steps
# shrunk on every pixel's switch until the budget is gone.
Switching = Callable[[float, float], "torch.Tensor | None"]


# Where a value's model output switches inside a step, the step is split at the switch, located to
# 1/SWITCH_GRID of the step by reading `switching` there (no model call).
SWITCH_GRID = 16


def switch_intervals(switching: Switching, sigma_at: Callable[[float], float], t: float, t_new: float,
                     like: torch.Tensor) -> torch.Tensor:
    """Per value, the grid interval (0 to SWITCH_GRID - 1) of (t, t_new), in the solver's time, where
    `switching` first reports it switched since t: the number of inner grid points before that."""
    before = torch.zeros(like.shape, dtype=torch.int64, device=like.device)
    for j in range(1, SWITCH_GRID):
        gone = switching(sigma_at(t), sigma_at(t + (t_new - t) * j / SWITCH_GRID))
        if gone is not None:
            before += ~gone.expand(like.shape)
    return before.clamp_(max=SWITCH_GRID - 1)


def across_located_switches(switching: Switching, sigma_at: Callable[[float], float], t: float, t_new: float,
                            x: torch.Tensor, denoised_before: torch.Tensor, denoised_after: torch.Tensor,
                            intervals: torch.Tensor | None = None) -> torch.Tensor:
    """x at t_new for values whose model output switches inside the step: DDIM (exact while the
    denoised prediction is constant) from t to the switch on the prediction at t, and on from there to
    t_new on the prediction at t_new; the switch at the middle of its grid interval (switch_intervals)."""
    sigma, sigma_new = sigma_at(t), sigma_at(t_new)
    grid = [sigma_at(t + (t_new - t) * (j + 0.5) / SWITCH_GRID) for j in range(SWITCH_GRID)]
    if intervals is None:
        intervals = switch_intervals(switching, sigma_at, t, t_new, x)
    sigma_switch = torch.tensor(grid, dtype=x.dtype, device=x.device)[intervals]
    return ddim(ddim(x, denoised_before, sigma, sigma_switch), denoised_after, sigma_switch, sigma_new)


def ddim(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_new):
    """x moved from sigma to sigma_new on a constant denoised prediction (exact in log sigma): DDIM."""
    return torch.lerp(denoised, x, sigma_new / sigma)


# Values switching inside a step are left out of its error, so the step must not cover most of them
# spread out: with more than this share of the values switching at different grid points inside it,
# the step is rejected and halved (a switch of many values at one sigma, which no shorter step
# separates, does not count as spread).
MAX_SWITCHING_SHARE = 0.25


def left_out_of_error(switched: torch.Tensor | None) -> torch.Tensor | None:
    """The switched values the error leaves out, or None: when most values switched (a mask at one
    opacity opens everywhere at one sigma), nothing is left to check, so the error counts them all and
    the step control treats the switch as the jump it is."""
    if switched is None or float(switched.float().mean()) > 0.5:
        return None
    return switched


def switches_inside(switching: Switching | None, sigma_at: Callable[[float], float], t: float, t_new: float,
                    like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(where values switch inside the step, their grid intervals), or (None, None) where none does."""
    switched = switching(sigma_at(t), sigma_at(t_new)) if switching is not None else None
    if switched is None or not bool(switched.any()):
        return None, None
    return switched, switch_intervals(switching, sigma_at, t, t_new, like)


def too_many_switch(switched: torch.Tensor, intervals: torch.Tensor | None) -> bool:
    """Whether more than MAX_SWITCHING_SHARE of the values switch inside the step, at more than one grid
    interval (switch_intervals) of it."""
    if float(switched.float().mean()) <= MAX_SWITCHING_SHARE:
        return False
    if intervals is None:
        return True
    chosen = intervals[switched.expand(intervals.shape)]
    return bool(chosen.numel()) and int(chosen.max()) != int(chosen.min())


def travelled(sigma_start: float, sigma_end: float, sigma: float) -> float:
    """How far an adaptive solve has come, 0 to 1: in log sigma, where the solvers spend their steps
    (in sigma itself an eps model's solve would show half done after its first step), or in sigma when
    an end is 0."""
    if sigma_start > 0 and sigma_end > 0 and sigma > 0 and sigma_start != sigma_end:
        done = math.log(sigma_start / sigma) / math.log(sigma_start / sigma_end)
    else:
        done = abs(sigma_start - sigma) / (abs(sigma_start - sigma_end) or 1.0)
    return min(1.0, max(0.0, done))


class _Problem:
    """The ODE in one form, counting model calls and running the per-call hook."""

    def __init__(self, denoiser: Denoiser, form, stats: SolveStats, on_model_call: Callable[[], None] | None):
        self.denoiser, self.form, self.stats, self.on_model_call = denoiser, form, stats, on_model_call
        self.last_denoised = None

    def __call__(self, t: float, y: torch.Tensor) -> torch.Tensor:
        if self.on_model_call is not None:
            self.on_model_call()  # ComfyUI's interrupt check: every call, not only between steps
        sigma = self.form.sigma(t)
        x = self.form.x(y, t)
        denoised = self.denoiser(x, sigma)
        self.stats.model_calls += 1
        check_model_output(self.stats.method, denoised, sigma, self.stats.model_calls)
        self.last_denoised = denoised
        return self.form.derivative(denoised, x, sigma)


def rk_step(f, t: float, y: torch.Tensor, h: float, coeffs, k1: torch.Tensor):
    """One explicit Runge-Kutta step. Returns (y_new, error estimate or None, stage derivatives).

    For FSAL tableaux the last stage input equals y_new, so y_new is taken from it.
    """
    c, a, b, e = coeffs
    ks = [k1]
    y_stage = y
    for i in range(1, len(c)):
        y_stage = _combine(y, ks, a[i], h)
        ks.append(f(t + c[i] * h, y_stage))
    if a[-1] == b[:-1] and b[-1] == 0.0 and c[-1] == 1.0:
        y_new = y_stage
    else:
        y_new = _combine(y, ks, b, h)
    err = None
    if e is not None:
        err = _combine(None, ks, e, h)
    return y_new, err, ks


def _combine(y, ks, weights, h):
    """y + h * sum(w_j k_j) (or without y), in elementwise passes: memory-bound, no matmul (a TF32
    matmul setting elsewhere would silently cut its precision)."""
    out = None
    for w, k in zip(weights, ks):
        if w == 0.0:
            continue
        if out is None:
            out = torch.add(y, k, alpha=h * w) if y is not None else torch.mul(k, h * w)
        else:
            out.add_(k, alpha=h * w)
    if out is None:
        out = y.clone() if y is not None else torch.zeros_like(ks[0])
    return out


def size_at(sigma: float) -> float:
    """What the error norm multiplies a latent at `sigma` by: 1 / max(1, sigma). An eps or v model's
    latent is the image plus sigma times the noise, so above sigma 1 its size is mostly noise: a step
    from sigma 30 to 0.03 measured against |x| at 30 would let the error outgrow the image (zero-SNR
    schedules start near sigma 4500). Divided by sigma, every latent is measured on the image's scale;
    a flow model's (sigma <= 1) and every model's last stretch are measured as they are."""
    return 1.0 / sigma if sigma > 1.0 else 1.0


def error_ratio(err_x: torch.Tensor, x_old: torch.Tensor, x_new: torch.Tensor, rtol: float, atol: float,
                left_out: torch.Tensor | None = None, sigma_old: float = 1.0, sigma_new: float = 1.0) -> float:
    """Per-image RMS of the scaled error, maxed over the batch (<= 1 means accept); over the values not
    `left_out` (a boolean mask broadcastable to err_x) when given. Each latent is sized at its sigma
    (size_at), the error at the new one's."""
    size_old, size_new = size_at(sigma_old), size_at(sigma_new)
    abs_old, abs_new = x_old.abs(), x_new.abs()
    if size_old != 1.0:
        abs_old.mul_(size_old)
    if size_new != 1.0:
        abs_new.mul_(size_new)
    scale = torch.maximum(abs_old, abs_new).mul_(rtol).add_(atol)
    squares = (err_x / scale).square()
    # the error sized at sigma_new: the norm is linear in it, so the size multiplies the result
    if left_out is None:
        return size_new * float(squares.flatten(1).mean(dim=1).sqrt().max())
    total = squares.masked_fill(left_out, 0.0).flatten(1).sum(dim=1)
    kept = (~left_out).expand(squares.shape).flatten(1).sum(dim=1).clamp(min=1)
    return size_new * float((total / kept).sqrt().max())


def _rms(v: torch.Tensor) -> float:
    return float(v.square().flatten(1).mean(dim=1).sqrt().max())


def first_step(form, sigma0: float, x0: torch.Tensor, denoised0: torch.Tensor, order: int, rtol: float,
               log_step: float | None = None) -> float:
    """The first step in the form's time, chosen from the problem at no model call (or `log_step`, in
    log sigma, when given: a solve carrying on from another one's steps).

    The probability-flow ODE is close to scale-free in log(sigma) (dx/dlog sigma = x - D), so the
    step is a fraction of rms(x) / rms(x - D): how far log(sigma) must move for x to change by its
    own size. Hairer's selection (Solving ODEs I, II.4) would spend a probe call to refine it.
    """
    if log_step is None:
        rate = _rms(x0 - denoised0)
        log_step = FIRST_STEP_SCALE * _rms(x0) / rate if rate > 0 else FIRST_STEP_BOUNDS[1]
        log_step *= min(1.0, (rtol / FIRST_STEP_RTOL) ** (1.0 / (order + 1)))
    log_step = min(FIRST_STEP_BOUNDS[1], max(FIRST_STEP_BOUNDS[0], log_step))
    return abs(form.time(sigma0 * math.exp(-log_step)) - form.time(sigma0))


# The dtypes a model may compute in, as the step control tells them apart (others count as float32).
MODEL_PRECISIONS = ("float32", "float16", "bfloat16")


def check_model_precision(value: str):
    if value not in MODEL_PRECISIONS:
        raise ValueError(f"FlowAnime: 'model_precision' must be one of {MODEL_PRECISIONS}, got {value!r}.")


@dataclass(frozen=True)
class AdaptiveSettings:
    rtol: float = 10 ** -2.5
    atol: float = 10 ** -3.5
    max_model_calls: int = 300
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 30.0  # measured on bench/gmm.py: 10 made loose solves climb out of small steps
    model_precision: str = "float32"  # the dtype the model computes in (the Adams methods' controller uses it)
    first_log_step: float | None = None  # in log sigma; None: first_step chooses it
    calls_before: int = 0  # spent by earlier segments of the same solve, out of max_model_calls

    def __post_init__(self):
        check_model_precision(self.model_precision)


class StepControl:
    """The step-size controller both adaptive solvers share: an I-controller (factor safety *
    ratio^-exponent, clamped), Hairer's no-growth rule after a rejection, and the last step
    stretched to the end rather than leaving a sliver."""

    def __init__(self, h: float, safety: float, min_factor: float, max_factor: float):
        self.h, self.safety, self.min_factor, self.max_factor = h, safety, min_factor, max_factor
        self.rejected_last = False

    def propose(self, remaining: float) -> tuple[float, bool]:
        """(step, whether it is the last). A step that would leave a sliver (< 1/4 of it) is
        stretched to the end, but never right after a rejection: the shrunk step would be stretched
        back to the rejected one and fail the same way until the budget ran out."""
        last = (self.h if self.rejected_last else self.h * 1.25) >= remaining
        return (remaining if last else self.h), last

    def accept(self, step: float, ratio: float, exponent: float):
        factor = self.max_factor if ratio == 0 else self.safety * ratio**-exponent
        self.h = step * min(1.0 if self.rejected_last else self.max_factor, max(self.min_factor, factor))
        self.rejected_last = False

    def reject(self, step: float, ratio: float, exponent: float):
        self.h = step * max(self.min_factor, self.safety * ratio**-exponent)
        self.rejected_last = True


# The messages name where a setting lives: the tolerances and the budget on the Runge-Kutta ODE Sampler
# node (KSampler's flowanime_* entries have none), the compute dtype in ComfyUI itself.
ENTRIES_HAVE_FIXED_ONES = "the flowanime_* entries of KSampler have fixed ones"
MODEL_FAULT_ADVICE = ("A model computing in float16 can overflow: run it in bf16 or fp32 (ComfyUI's ModelComputeDtype "
                      "node, or ComfyUI started with --bf16-unet or --fp32-unet); or lower the CFG or the LoRA strengths.")


def step_collapsed(name: str, sigma: float, calls: int) -> StepSizeCollapsed:
    return StepSizeCollapsed(
        f"FlowAnime {name}: the step size collapsed at sigma={sigma:.4g} after {calls} model calls: the model's "
        "output changes too abruptly for the tolerances. Loosen them (on the Runge-Kutta ODE Sampler node, "
        f"'log10_rtol'/'log10_atol', e.g. -2; {ENTRIES_HAVE_FIXED_ONES}), or use a fixed-step method "
        "(flowanime_flow_multistep, or a ComfyUI sampler such as euler)."
    )


def model_output_not_finite(name: str, sigma: float, where: str, out_of_range: bool = False) -> ModelOutputNotFinite:
    what = (f"values out of range (beyond +-{MAX_DENOISED:g}, no latent is that large)" if out_of_range
            else "NaN or inf")
    return ModelOutputNotFinite(
        f"FlowAnime {name}: the model returned {what} at sigma~{sigma:.4g} ({where}). The sampler's inputs were "
        f"checked and finite, so this comes from the model. {MODEL_FAULT_ADVICE}"
    )


def reserved_calls(tableau: ButcherTableau) -> int:
    """Calls an adaptive solve keeps in hand: a non-FSAL method's denoised prediction at the end."""
    return 0 if tableau.fsal else 1


def calls_for_one_step(tableau: ButcherTableau) -> int:
    """Model calls solve_adaptive needs to take one step and finish: the first stage, the step's
    other stages, and the calls it keeps in hand."""
    return tableau.stages + reserved_calls(tableau)


def budget_spent_message(name: str, budget: int, sigma: float) -> str:
    return (
        f"FlowAnime {name}: the budget of {budget} model calls ran out at sigma={sigma:.4g}; the image was "
        "finished with one large step and may be soft. On the Runge-Kutta ODE Sampler node, raise "
        f"'max_model_calls' or loosen 'log10_rtol'/'log10_atol' ({ENTRIES_HAVE_FIXED_ONES})."
    )


def solve_adaptive(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    tableau: ButcherTableau,
    settings: AdaptiveSettings = AdaptiveSettings(),
    form: str = "data",
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
    switching: Switching | None = None,
):
    """Integrate from sigma_start to sigma_end (both > 0) with an embedded RK pair: down to sample,
    up to invert (unsample) an image. switching: see Switching.

    Returns (x at sigma_end, denoised prediction at sigma_end, stats). The denoised prediction is
    free for FSAL methods and costs one model call otherwise.
    """
    if not tableau.adaptive:
        raise ValueError(f"{tableau.name} has no embedded error estimate; use solve_fixed")
    if not (sigma_start > 0 and sigma_end > 0 and sigma_end != sigma_start):
        raise ValueError(f"need two different sigmas above 0, got {sigma_start} and {sigma_end}")
    ode_form = FORMS[form]
    stats = SolveStats(tableau.name)
    started = time.perf_counter()
    f = _Problem(denoiser, ode_form, stats, on_model_call)
    coeffs = tableau.floats()
    rtol, atol = settings.rtol, settings.atol

    t, t_end = ode_form.time(sigma_start), ode_form.time(sigma_end)
    direction = 1.0 if t_end > t else -1.0
    y = ode_form.state(x, sigma_start)
    k1 = f(t, y)
    denoised = f.last_denoised
    control = StepControl(first_step(ode_form, sigma_start, x, denoised, tableau.error_order, rtol,
                                     settings.first_log_step),
                          settings.safety, settings.min_factor, settings.max_factor)
    exponent = 1.0 / (tableau.error_order + 1)
    x_cur = x
    reserve = reserved_calls(tableau)

    def calls_left() -> int:
        return settings.max_model_calls - settings.calls_before - stats.model_calls

    while direction * (t_end - t) > 0:
        remaining = direction * (t_end - t)
        # a step whose first stage is known (FSAL, the first step, after a rejection) needs one call fewer
        if tableau.stages - (k1 is not None) + reserve > calls_left():
            break
        if k1 is None:  # non-FSAL: the first stage at the new point
            k1 = f(t, y)
            denoised = f.last_denoised
        step, last = control.propose(remaining)
        if step <= 1e-12 * max(abs(t), abs(t_end)):
            raise step_collapsed(tableau.name, ode_form.sigma(t), stats.model_calls)
        t_new = t_end if last else t + direction * step
        switched, intervals = switches_inside(switching, ode_form.sigma, t, t_new, x_cur)
        if switched is not None and too_many_switch(switched, intervals):  # known before any call
            stats.rejected += 1
            control.reject(step, 2.0 ** (1.0 / exponent), exponent)  # about half the step
            continue
        y_new, err, ks = rk_step(f, t, y, direction * step, coeffs, k1)
        x_new = ode_form.x(y_new, t_new)
        err_x = ode_form.x(err, t_new)
        if switched is not None:
            if tableau.fsal:
                # FSAL: the last stage is the model at (t_new, y_new); there the step is split at the switch,
                # and the derivative the next step starts from is read where those values now are
                split = across_located_switches(switching, ode_form.sigma, t, t_new, x_cur, denoised, f.last_denoised,
                                                intervals)
                x_new = torch.where(switched, split, x_new)
                y_new = ode_form.state(x_new, ode_form.sigma(t_new))
                ks[-1] = torch.where(switched, ode_form.derivative(f.last_denoised, x_new, ode_form.sigma(t_new)),
                                     ks[-1])
        ratio = error_ratio(err_x, x_cur, x_new, rtol, atol, left_out_of_error(switched),
                            ode_form.sigma(t), ode_form.sigma(t_new))
        if not math.isfinite(ratio):
            bad = [i for i, k in enumerate(ks) if not bool(torch.isfinite(k).all())]
            raise model_output_not_finite(tableau.name, ode_form.sigma(t),
                                          f"stage {bad[0] if bad else '?'}, call {stats.model_calls}")
        if ratio <= 1.0:
            stats.accepted += 1
            t, y, x_cur = t_new, y_new, x_new
            if tableau.fsal:
                k1, denoised = ks[-1], f.last_denoised
            elif last:  # the prediction at the end (the image, sampling to 0) before the step is reported
                k1 = f(t, y)
                denoised = f.last_denoised
            else:
                k1 = None
            control.accept(step, ratio, exponent)
            if on_step is not None:
                sigma = ode_form.sigma(t)
                preview = denoised if tableau.fsal or last else f.last_denoised
                on_step(StepInfo(sigma, x_cur, preview, travelled(sigma_start, sigma_end, sigma), stats))
        else:
            stats.rejected += 1
            control.reject(step, ratio, exponent)

    if direction * (t_end - t) > 0:
        # Budget spent: finish with one first-order step to the end on the last derivative (DDIM
        # in the data form) rather than returning a half-solved or NaN latent. That step holds the
        # denoised prediction constant, so it is also the prediction at the end: a caller finishing
        # at sigma 0 takes it as the image, not the latent still holding sigma_end's noise.
        stats.budget_exhausted = True
        if k1 is None and calls_left() >= 1:  # the call kept in hand: the derivative where the step starts
            k1 = f(t, y)
            denoised = f.last_denoised
        elif k1 is None:
            denoised = f.last_denoised
            k1 = ode_form.derivative(denoised, x_cur, ode_form.sigma(t))
        y = y + (t_end - t) * k1
        x_cur = ode_form.x(y, t_end)
        if log is not None:
            log(budget_spent_message(tableau.name, settings.max_model_calls, ode_form.sigma(t)))
    stats.final_sigma = sigma_end
    stats.seconds = time.perf_counter() - started
    return x_cur, denoised, stats


def solve_fixed(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    tableau: ButcherTableau,
    form: str = "data",
    on_step: Callable[[StepInfo], None] | None = None,
    on_model_call: Callable[[], None] | None = None,
):
    """One RK step per interval of the scheduler's sigmas. A final interval to sigma=0 returns the
    denoised prediction (the exact limit of an Euler step to 0, one call)."""
    ode_form = FORMS[form]
    stats = SolveStats(tableau.name)
    started = time.perf_counter()
    f = _Problem(denoiser, ode_form, stats, on_model_call)
    coeffs = tableau.floats()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == s:
            continue
        if s_next <= 0:
            f(ode_form.time(s), ode_form.state(x, s))
            x = f.last_denoised
            denoised = x
        else:
            t, t_next = ode_form.time(s), ode_form.time(s_next)
            y = ode_form.state(x, s)
            k1 = f(t, y)
            denoised = f.last_denoised
            y_new, _, _ = rk_step(f, t, y, t_next - t, coeffs, k1)
            x = ode_form.x(y_new, t_next)
        stats.accepted += 1
        if on_step is not None:
            on_step(StepInfo(max(s_next, 0.0), x, denoised, (i + 1) / (len(sigmas) - 1), stats))
    if not bool(torch.isfinite(x).all()):
        raise ModelOutputNotFinite(
            f"FlowAnime {tableau.name}: the result has NaN or inf: the model returned non-finite values. "
            + MODEL_FAULT_ADVICE
        )
    stats.seconds = time.perf_counter() - started
    return x, stats
