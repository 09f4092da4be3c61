"""A sigma schedule fitted to one model: where to put N model calls of exp_multistep.

One adaptive solve (adams_pc, samplers/multistep.py) on a few noise draws finds where the model's
trajectories bend: its error control takes short steps there and long ones where the denoised
prediction barely changes. The schedule puts the N calls at equal quantiles of that step density,
softened by a power (DENSITY_POWERS): a method whose steps are each cheaper in error than the
teacher's can afford to spread them more evenly. The last call sits where the teacher stopped
(sigma_floor) and its denoised prediction is the image.

With `check` on, the schedule is run on the draws for each of a few powers and the one closest to
the teacher's image is kept (N calls each). Then, if the teacher's denoised prediction came within a
tenth of that schedule's error of the teacher's image well above sigma_floor, the calls below that
point cannot buy more than a tenth of the error: the same powers are tried once more on the teacher's
steps down to there, so the schedule ends there and spends those calls higher up, and the closest of
all is kept (N calls each, again).

The idea is that of "Optimal Stepsize for Diffusion Sampling" (Pei et al. 2025, arXiv 2503.21774)
and Align Your Steps (Sabour et al. 2024, arXiv 2404.14507): fit the schedule to the model from a
teacher trajectory. Here the fit costs the teacher's calls and nothing more; an optional check runs
the schedule on the same draws and measures its error against the teacher.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .k_sampler import BREAKPOINT_GAP, solve_in_segments
from .multistep import solve_adams_pc, solve_exp_multistep
from .ode import AdaptiveSettings, Denoiser, StepInfo, travelled

MAX_STEPS = 200
TEACHER_LOG10_RTOL_RANGE = (-6.0, -1.5)
# A checked error above this (RMS, latent units) means the schedule does not follow the teacher:
# too few steps for this model, often a draw that settled on another mode. The report says so.
FAR_FROM_TEACHER = 3e-2
# Shares of the progress bar: the teacher solve, then the checks (the earlier end's last).
TEACHER_SHARE, FIRST_CHECK_SHARE = 0.6, 0.3
# Measured on bench/gmm.py's narrow mixture (the problem we tune on), powers 0.5 to 1.66, 3 to 24
# calls: 0.75 had the lowest error from 8 calls up; below that it can skip the early steps where
# the draws pick their mode, and 1.33, which crowds the calls there, did best. With `check` on both
# are run on the draws and the better one is kept.
DENSITY_POWERS = (0.75, 1.33)
# With check on, the share of the checked error that the last call's jump to its denoised prediction
# may add: the schedule may end at the first teacher step from which the teacher's denoised prediction
# stays this close to its image (1/3 and 1/10 measured on six problems: 1/3 lost on the tuning problem).
END_SHARE = 0.1


@dataclass(frozen=True)
class CalibrationSettings:
    steps: int = 12
    order: int = 3
    teacher_log10_rtol: float = -2.5
    sigma_floor: float = 1e-3  # the teacher integrates down to here; the last call is made here
    density_powers: tuple[float, ...] = DENSITY_POWERS  # tried in turn with check on; the first without
    check: bool = True
    max_teacher_calls: int = 400
    model_precision: str = "float32"  # the dtype the model computes in: the teacher allows for its rounding

    def __post_init__(self):
        if not 2 <= self.steps <= MAX_STEPS:
            raise ValueError(f"FlowAnime calibration: 'steps' must be between 2 and {MAX_STEPS}, got {self.steps}.")
        if self.order not in (1, 2, 3):
            raise ValueError(f"FlowAnime calibration: 'order' must be 1, 2 or 3, got {self.order}.")
        tightest, loosest = TEACHER_LOG10_RTOL_RANGE
        if not (math.isfinite(self.teacher_log10_rtol) and tightest <= self.teacher_log10_rtol <= loosest):
            raise ValueError(f"FlowAnime calibration: 'teacher_log10_rtol' must be between {tightest:g} and {loosest:g}, "
                             f"got {self.teacher_log10_rtol}. Typical: -2.5.")
        if not (math.isfinite(self.sigma_floor) and 0 < self.sigma_floor <= 0.05):
            raise ValueError(f"FlowAnime calibration: 'sigma_floor' must be in (0, 0.05], got {self.sigma_floor}. "
                             "Typical: 0.001.")
        if not self.density_powers or not all(math.isfinite(p) and 0.25 <= p <= 2 for p in self.density_powers):
            raise ValueError(f"FlowAnime calibration: 'density_powers' must be in [0.25, 2], got {self.density_powers}.")
        if not 8 <= self.max_teacher_calls <= 5000:
            raise ValueError(f"FlowAnime calibration: 'max_teacher_calls' must be in [8, 5000], got {self.max_teacher_calls}.")


@dataclass
class Calibration:
    sigmas: torch.Tensor  # steps + 1 values, descending, the last 0
    teacher_calls: int  # batched model calls; each evaluates every draw
    check_calls: int
    draws: int
    checked_error: float | None  # the schedule's error on the draws against the teacher (mean per-image RMS)
    seconds: float
    density_power: float = DENSITY_POWERS[0]
    checked: dict | None = None  # power (and end, when an earlier end was tried) -> its error on the draws

    @property
    def model_calls(self) -> int:
        """Batched calls (calls per image of the calibration batch), as the samplers count them."""
        return self.teacher_calls + self.check_calls

    @property
    def image_evaluations(self) -> int:
        """What the calibration cost in single-image model evaluations: calls times draws."""
        return self.model_calls * self.draws

    def summary(self) -> str:
        sig = ", ".join(f"{s:.4g}" for s in self.sigmas.tolist())
        checked = ""
        if self.checked:
            tried = ", ".join(f"{p}: {e:.2e}" for p, e in self.checked.items())
            checked = (f"; error on the draws against the teacher by density power and last sigma ({tried}): kept "
                       f"{self.density_power:g}, last sigma {float(self.sigmas[-2]):.4g}")
        text = (f"{len(self.sigmas) - 1} steps: sigmas [{sig}]; calibration cost {self.model_calls} model calls "
                f"on {self.draws} draw(s) ({self.teacher_calls} teacher, {self.check_calls} check){checked}; "
                f"{self.seconds:.1f} s")
        if self.checked_error is not None and self.checked_error > FAR_FROM_TEACHER:
            text += (f". WARNING: on the draws this schedule ends {self.checked_error:.2g} (RMS) from the accurate "
                     "solve: too few steps for this model; raise 'steps' or sample with adams_pc.")
        return text


@dataclass
class TeacherSolve:
    lams: list[float]  # its accepted log-sigmas, from the start, increasing
    image: torch.Tensor  # where it ended (the denoised prediction at sigma_floor)
    model_calls: int
    settled: list[float]  # per node: mean per-draw RMS from the denoised prediction there to the image


def teacher_nodes(denoiser: Denoiser, noise: torch.Tensor, sigma_max: float, settings: CalibrationSettings,
                  on_model_call: Callable[[], None] | None = None,
                  on_progress: Callable[[float, torch.Tensor], None] | None = None,
                  breakpoints: Sequence[float] = ()) -> TeacherSolve:
    """The adaptive solve from sigma_max to sigma_floor, with how close each accepted step's denoised
    prediction already was to the image the solve ended at. on_progress: how far it has come, 0 to 1,
    and the step's denoised prediction (for a preview). At `breakpoints` (sigmas where the model's
    output jumps: a scheduled prompt, hook keyframe or patch range) the solve ends and starts afresh
    (k_sampler.solve_in_segments), so its steps do not crowd onto a jump no schedule can follow."""
    lams, denoised = [-math.log(sigma_max)], [None]

    def on_step(info: StepInfo):
        lams.append(-math.log(info.sigma))
        denoised.append(info.denoised.detach().float().cpu())  # one latent per draw and step: kept off the GPU
        if on_progress is not None:
            on_progress(travelled(sigma_max, settings.sigma_floor, info.sigma), info.denoised)

    teacher_settings = AdaptiveSettings(rtol=10**settings.teacher_log10_rtol,
                                        atol=10 ** (settings.teacher_log10_rtol - 1),
                                        max_model_calls=settings.max_teacher_calls,
                                        model_precision=settings.model_precision)
    def solve_segment(x, begin, end, segment_settings, segment_on_step, log):
        return solve_adams_pc(denoiser, x, begin, end, segment_settings, on_step=segment_on_step,
                              on_model_call=on_model_call, log=log)

    _, image, stats = solve_in_segments(solve_segment, noise, sigma_max, settings.sigma_floor, breakpoints,
                                        teacher_settings, "adams_pc", on_step)
    if stats.budget_exhausted or image is None:
        loosest = TEACHER_LOG10_RTOL_RANGE[1]
        advice = (f"raise teacher_log10_rtol (now {settings.teacher_log10_rtol:g}, at most {loosest:g}), "
                  if settings.teacher_log10_rtol < loosest else "")
        raise RuntimeError(f"FlowAnime calibration: the teacher solve spent its {settings.max_teacher_calls} model "
                           f"calls before sigma_floor: {advice}lower cfg (a very high CFG makes the trajectories "
                           "stiff), or check the model.")
    target = image.detach().float().cpu()
    settled = [math.inf if d is None else _mean_rms(d, target) for d in denoised]
    return TeacherSolve(lams, image, stats.model_calls, settled)


def _mean_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    # widened on the CPU: the model's device may have no float64 (Apple's MPS)
    a, b = (t.detach().to("cpu", torch.float64) for t in (a, b))
    return float((a - b).flatten(1).square().mean(1).sqrt().mean())


def settled_from(settled: list[float], tolerance: float) -> int:
    """The first node from which every later denoised prediction is within `tolerance` of the image."""
    index = len(settled) - 1
    while index > 0 and settled[index - 1] <= tolerance:
        index -= 1
    return index


def schedule_from_nodes(lams: list[float], steps: int, power: float) -> list[float]:
    """`steps` log-sigmas from the first teacher node to the last, at equal quantiles of the teacher's
    step density (1 / step length) raised to `power`; piecewise constant between teacher nodes."""
    lam = np.asarray(lams, dtype=np.float64)
    lengths = np.diff(lam)
    if lengths.size == 0 or not np.all(lengths > 0):
        raise ValueError("FlowAnime calibration: the teacher's log-sigmas must increase")
    mass = lengths ** (1.0 - power)  # each interval's share: length * density ** power
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    return np.interp(np.linspace(0.0, cdf[-1], steps), cdf, lam).tolist()


def just_below_breakpoints(sigmas: list[float], breakpoints: Sequence[float]) -> list[float]:
    """The decreasing sigmas with, for each breakpoint between two of them, the nearer of those two (in
    log sigma) moved to just below it (BREAKPOINT_GAP): the step across the jump then ends where the
    new prediction holds, and the next step's history starts there. The first sigma (the noise's), the
    last (the image is its prediction) and one already moved stay where they are."""
    out, moved = list(sigmas), set()
    for b in sorted(breakpoints, reverse=True):
        i = next((i for i in range(len(out) - 1) if out[i] > b >= out[i + 1]), None)
        if i is None:
            continue
        nearer = i if abs(math.log(out[i] / b)) <= abs(math.log(b / out[i + 1])) else i + 1
        below = b * (1 - BREAKPOINT_GAP)
        if nearer in moved or nearer in (0, len(out) - 1) or not out[i + 1] < below:
            continue
        out[nearer] = below
        moved.add(nearer)
    return out


def calibrate_schedule(denoise: Denoiser, calibration_noise: torch.Tensor, sigma_max: float, steps: int,
                       order: int = 3, settings: CalibrationSettings | None = None,
                       on_model_call: Callable[[], None] | None = None,
                       log: Callable[[str], None] | None = None,
                       on_progress: Callable[[float, torch.Tensor], None] | None = None,
                       breakpoints: Sequence[float] = ()) -> Calibration:
    """A `steps`-call schedule for exp_multistep of `order`, fitted to `denoise` (batched D(x, sigma))
    from calibration_noise (the starting latents at sigma_max, one per draw). With settings.check,
    each of settings.density_powers is run on the draws and the one closest to the teacher is kept.
    on_progress: the share of the calibration done, 0 to 1, after each teacher step and check run, with
    the teacher's latest denoised prediction (its image, once it has finished), for a preview.
    breakpoints: sigmas where the model's output jumps; the teacher is split there (teacher_nodes) and
    the checks restart at them as exp_multistep does when sampling (multistep._ends_past_breakpoint).
    Returns the sigmas (ending in 0) and what the calibration cost."""
    settings = replace(settings or CalibrationSettings(), steps=steps, order=order)
    if not (math.isfinite(sigma_max) and sigma_max > 2 * settings.sigma_floor):
        raise ValueError(f"FlowAnime calibration: the schedule must start above 2 x sigma_floor "
                         f"({2 * settings.sigma_floor:g}), got sigma_max {sigma_max}.")
    started = time.perf_counter()
    noise = calibration_noise
    if noise.dtype in (torch.float16, torch.bfloat16):
        noise = noise.float()

    def schedule(lams, power):
        spread = [math.exp(-lam) for lam in schedule_from_nodes(lams, steps, power)[1:]]
        return [*just_below_breakpoints([sigma_max, *spread], breakpoints), 0.0]

    def progress(fraction, denoised):
        if on_progress is not None:
            on_progress(min(1.0, fraction), denoised)

    with torch.no_grad():
        teacher = teacher_nodes(denoise, noise, sigma_max, settings, on_model_call,
                                lambda done, denoised: progress(TEACHER_SHARE * done, denoised), breakpoints)
        candidates = settings.density_powers if settings.check else settings.density_powers[:1]
        schedules = {f"{p:g}": (p, schedule(teacher.lams, p)) for p in candidates}
        checked, check_calls = {}, 0

        def check(names, start, share):
            nonlocal check_calls
            for done, name in enumerate(names, 1):
                out, stats = solve_exp_multistep(denoise, noise.clone(), schedules[name][1], order,
                                                 on_model_call=on_model_call, breakpoints=breakpoints)
                check_calls += stats.model_calls
                checked[name] = _mean_rms(out, teacher.image)
                progress(start + share * done / len(names), teacher.image)

        if settings.check:
            check(list(schedules), TEACHER_SHARE, FIRST_CHECK_SHARE)
            end = settled_from(teacher.settled, END_SHARE * min(checked.values()))
            end_sigma = math.exp(-teacher.lams[end])
            if end >= 2 and end_sigma >= 2 * settings.sigma_floor:
                earlier = {f"{p:g} to {end_sigma:.3g}": (p, schedule(teacher.lams[:end + 1], p)) for p in candidates}
                schedules.update(earlier)
                check(list(earlier), TEACHER_SHARE + FIRST_CHECK_SHARE, 1 - TEACHER_SHARE - FIRST_CHECK_SHARE)
    progress(1.0, teacher.image)
    name = min(checked, key=checked.get) if checked else next(iter(schedules))
    power, sigmas = schedules[name]
    result = Calibration(torch.tensor(sigmas, dtype=torch.float32), teacher.model_calls, check_calls, noise.shape[0],
                         checked.get(name), time.perf_counter() - started, power, checked or None)
    if log is not None:
        log(f"FlowAnime calibration: {result.summary()}")
    return result
