"""The schedule calibration core (samplers/calibrate.py): the schedule follows the teacher's step
density, its cost is counted, its check is an independent run, bad settings are named. Whether the
calibrated schedules need fewer calls than other schedules is measured by bench/bench_samplers.py,
not asserted here."""

from __future__ import annotations

import math

import pytest
import torch
from solver_problems import single_gaussian

from flowanime.bench.gmm import rms_error
from flowanime.samplers.calibrate import (
    END_SHARE,
    CalibrationSettings,
    calibrate_schedule,
    just_below_breakpoints,
    schedule_from_nodes,
    settled_from,
    teacher_nodes,
)
from flowanime.samplers.multistep import solve_exp_multistep

TEACHER = [0.0, 0.01, 0.03, 0.1, 0.4, 1.2, 3.0, 6.9]


def test_power_zero_spreads_the_calls_evenly_in_log_sigma():
    assert schedule_from_nodes(TEACHER, 5, 0.0) == pytest.approx([0.0, 1.725, 3.45, 5.175, 6.9])


def test_power_one_puts_the_calls_on_the_teachers_steps():
    assert schedule_from_nodes(TEACHER, 8, 1.0) == pytest.approx(TEACHER)
    # every other teacher node, when there are half as many calls
    assert schedule_from_nodes(TEACHER[:7], 4, 1.0) == pytest.approx(TEACHER[:7:2])


def test_a_stronger_power_crowds_the_calls_where_the_teacher_stepped_short():
    loose, strong = (schedule_from_nodes(TEACHER, 6, p) for p in (0.5, 1.0))
    assert loose[0] == strong[0] == 0.0 and loose[-1] == strong[-1] == pytest.approx(6.9)
    assert strong[1] < loose[1] and strong[2] < loose[2]
    assert all(b > a for a, b in zip(loose, loose[1:]))


def test_calibration_counts_its_calls_and_its_check_is_a_real_run():
    gmm, noise, exact = single_gaussian(batch=2, std=0.05)
    calls = []

    def denoise(x, sigma):
        calls.append(x.shape[0])
        return gmm.denoise(x, sigma)

    result = calibrate_schedule(denoise, noise[:1], 1.0, 8, order=3)
    sigmas = result.sigmas.tolist()
    assert len(sigmas) == 9 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert all(b < a for a, b in zip(sigmas, sigmas[1:]))
    assert result.model_calls == len(calls) == result.teacher_calls + result.check_calls
    # each of the two spreads is run once on the draw down to sigma_floor; this Gaussian settles well
    # above it, so both are run once more ending there; the closest to the teacher is kept
    floor_ending, earlier = {"0.75", "1.33"}, set(result.checked) - {"0.75", "1.33"}
    assert floor_ending < set(result.checked) and len(earlier) == 2 and all(" to " in name for name in earlier)
    assert result.check_calls == 8 * 4 and result.draws == 1 and result.image_evaluations == sum(calls)
    assert result.checked_error == min(result.checked.values())
    kept = min(result.checked, key=result.checked.get)
    assert result.density_power == float(kept.split()[0])
    if kept in floor_ending:
        assert sigmas[-2] == pytest.approx(CalibrationSettings().sigma_floor, rel=1e-5)
    else:
        assert sigmas[-2] == pytest.approx(float(kept.split(" to ")[1]), rel=1e-2)
    # the check is the schedule's own error against the teacher: compare with the exact flow
    out, _ = solve_exp_multistep(gmm.denoise, noise[:1].clone(), result.sigmas.double().tolist(), 3)
    assert result.checked_error == pytest.approx(rms_error(out, exact[:1]), abs=5e-3)
    assert "calibration cost" in result.summary()


def test_calibrated_schedule_samples_the_gaussian_accurately():
    gmm, noise, exact = single_gaussian(batch=3, std=0.05)
    result = calibrate_schedule(gmm.denoise, noise[:1], 1.0, 16, order=3)
    out, stats = solve_exp_multistep(gmm.denoise, noise[1:].clone(), result.sigmas.tolist(), 3)
    assert stats.model_calls == 16
    assert rms_error(out, exact[1:]) < 1e-3


@pytest.mark.parametrize("change, message", [
    (dict(steps=1), "'steps' must be between 2"),
    (dict(order=4), "'order' must be 1, 2 or 3"),
    (dict(teacher_log10_rtol=-1.0), "'teacher_log10_rtol'"),
    (dict(teacher_log10_rtol=math.nan), "'teacher_log10_rtol'"),
    (dict(sigma_floor=0.5), "'sigma_floor'"),
    (dict(density_powers=(0.75, 5.0)), "'density_powers'"),
    (dict(density_powers=()), "'density_powers'"),
])
def test_bad_settings_name_the_setting(change, message):
    with pytest.raises(ValueError, match=message):
        CalibrationSettings(**change)


def test_a_teacher_out_of_budget_says_what_to_change():
    gmm, noise, _ = single_gaussian(batch=1, std=0.05)
    with pytest.raises(RuntimeError, match=r"raise teacher_log10_rtol \(now -5, at most -1.5\), lower cfg"):
        calibrate_schedule(gmm.denoise, noise, 1.0, 6, settings=CalibrationSettings(max_teacher_calls=8,
                                                                                   teacher_log10_rtol=-5))
    with pytest.raises(RuntimeError, match="sigma_floor: lower cfg") as raised:  # already at the loosest
        calibrate_schedule(gmm.denoise, noise, 1.0, 6, settings=CalibrationSettings(
            max_teacher_calls=8, teacher_log10_rtol=-1.5, sigma_floor=1e-5))
    assert "teacher_log10_rtol" not in str(raised.value)
    with pytest.raises(ValueError, match="sigma_max"):
        calibrate_schedule(gmm.denoise, noise, 0.001, 6)


def test_without_the_check_the_first_spread_is_used_unchecked():
    gmm, noise, _ = single_gaussian(batch=1, std=0.05)
    result = calibrate_schedule(gmm.denoise, noise, 1.0, 6, settings=CalibrationSettings(check=False))
    assert result.check_calls == 0 and result.checked_error is None and result.density_power == 0.75
    assert result.model_calls == result.teacher_calls
    assert result.sigmas[-2].item() == pytest.approx(CalibrationSettings().sigma_floor, rel=1e-5)


@pytest.mark.parametrize("check", [True, False])
def test_progress_rises_through_the_teacher_and_the_checks_to_one(check):
    gmm, noise, exact = single_gaussian(batch=1, std=0.3)
    seen, previews = [], []

    def on_progress(fraction, denoised):
        seen.append(fraction)
        previews.append(denoised)

    result = calibrate_schedule(gmm.denoise, noise, 1.0, 6, settings=CalibrationSettings(check=check),
                                on_progress=on_progress)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 <= seen[0] < 0.6
    # each update comes with the teacher's denoised prediction so far, for the node's preview; it
    # approaches the exact image (the Gaussian's flow ends at a known point)
    assert all(p.shape == noise.shape and torch.isfinite(p).all() for p in previews)
    first, last = (rms_error(p, exact) for p in (previews[0], previews[-1]))
    assert last < first / 10 and result.sigmas[-1] == 0
    assert any(0.3 < p <= 0.6 for p in seen)  # the teacher's steps, in log sigma travelled
    if check:
        assert any(0.6 < p < 1.0 for p in seen)  # the check runs


def test_settled_from_finds_where_the_denoised_prediction_stays_close():
    assert settled_from([math.inf, 0.5, 0.01, 0.2, 0.004, 0.002, 0.0], 0.01) == 4  # 0.2 breaks the run at 3
    assert settled_from([math.inf, 0.5, 0.0], 0.01) == 2
    assert settled_from([math.inf, 0.001, 0.0], 0.01) == 1


def test_a_schedule_ends_where_the_teacher_settled_when_that_is_closer_to_the_exact_flow():
    """One Gaussian of std 0.3: its denoised prediction settles far above sigma_floor. Against the
    exact solution, the kept schedule (it ends there) beats both spreads that end at sigma_floor
    with the same calls, and its last sigma is where the teacher's denoised prediction came within
    END_SHARE of the kept floor-ending error of its image."""
    gmm, noise, exact = single_gaussian(batch=1, std=0.3)
    settings = CalibrationSettings()
    for steps in (4, 8):
        result = calibrate_schedule(gmm.denoise, noise, 1.0, steps, order=3)
        teacher = teacher_nodes(gmm.denoise, noise, 1.0, settings)
        floor_errors = {}
        for power in settings.density_powers:
            sigmas = [1.0, *(math.exp(-lam) for lam in schedule_from_nodes(teacher.lams, steps, power)[1:]), 0.0]
            out, _ = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas, 3)
            floor_errors[power] = rms_error(out, exact)
        out, stats = solve_exp_multistep(gmm.denoise, noise.clone(), result.sigmas.double().tolist(), 3)
        assert stats.model_calls <= steps + 1
        assert result.sigmas[-2].item() > 2 * settings.sigma_floor, steps
        assert rms_error(out, exact) < min(floor_errors.values()), (steps, rms_error(out, exact), floor_errors)
        floor_checked = min(result.checked[f"{p:g}"] for p in settings.density_powers)
        end = settled_from(teacher.settled, END_SHARE * floor_checked)
        assert result.sigmas[-2].item() == pytest.approx(math.exp(-teacher.lams[end]), rel=1e-5)


def test_a_schedule_far_from_the_teacher_is_reported():
    from flowanime.bench.gmm import GaussianMixture

    gmm = GaussianMixture.latent_like(shape=(4, 16, 16), components=8, seed=3)  # draws pick a mode early
    noise = gmm.sample_noise(1, seed=99)
    result = calibrate_schedule(gmm.denoise, noise, 1.0, 2)
    assert result.checked_error > 3e-2 and "WARNING" in result.summary() and "raise 'steps'" in result.summary()
    fine = calibrate_schedule(gmm.denoise, noise, 1.0, 16)
    assert fine.checked_error < 3e-2 and "WARNING" not in fine.summary()


def test_half_precision_noise_is_calibrated_in_float32():
    gmm, noise, _ = single_gaussian(batch=1, std=0.05)
    result = calibrate_schedule(lambda x, s: gmm.denoise(x.float(), s), noise.half(), 1.0, 6)
    assert torch.isfinite(result.sigmas).all() and result.checked_error < 0.1


@pytest.mark.parametrize("steps", [6, 12])
def test_calibrated_schedule_beats_uniform_geometric_and_shifted_schedules(steps):
    """A mixture whose draws must settle on a mode early (solution: scipy's DOP853 at 1e-10):
    the calibrated schedule, from another noise draw, has under half the error of the same number of
    calls spread uniformly in sigma, geometrically, or as ComfyUI's `simple` at shift 3. The one
    exception is the uniform schedule at 6 calls: exp_multistep now stages its long last step, and
    ours comes to 0.57 times its error (under 0.6 asserted)."""
    from flowanime.bench.gmm import GaussianMixture, reference_solution

    gmm = GaussianMixture.latent_like(shape=(4, 16, 16), components=8, seed=3)
    noise = gmm.sample_noise(3, seed=11)
    reference = reference_solution(gmm, noise)
    calibration = calibrate_schedule(gmm.denoise, gmm.sample_noise(1, seed=99), 1.0, steps, order=3)

    def error(sigmas):
        out, stats = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas, 3)
        return rms_error(out, reference), stats.model_calls

    def others(n):
        t = torch.linspace(1, 0, n + 1)[:-1]
        return {
            "uniform": [*torch.linspace(1, 1e-3, n).tolist(), 0.0],
            "geometric": [*torch.exp(torch.linspace(0, math.log(1e-3), n)).tolist(), 0.0],
            "simple, shift 3": [*(3 * t / (1 + 2 * t)).tolist(), 0.0],
        }

    ours, calls = error(calibration.sigmas.tolist())
    assert calls == steps
    for name, sigmas in others(steps).items():
        theirs, their_calls = error(sigmas)
        if their_calls > steps:  # exp_multistep staged its long last step: one sigma fewer for the same calls
            theirs, their_calls = error(others(steps - 1)[name])
        factor = 0.6 if (steps, name) == (6, "uniform") else 0.5
        assert their_calls == steps and ours < factor * theirs, name


def test_the_teacher_allows_for_a_half_precision_model():
    """The teacher is adams_pc: on a model as rough as a half-precision network it collapses its steps at
    the float32 safety factor; told the precision, it spends a fraction of the calls."""
    from flowanime.bench.gmm import GaussianMixture

    gmm = GaussianMixture.single(torch.full((4, 16, 16), 0.3), 0.5)

    def rough(x, sigma):
        d = gmm.denoise(x, sigma)
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        v = (x - d) / s
        return x - s * (v + 0.03 * v.abs() * torch.sin(12345.0 * x))

    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    calls = {told: calibrate_schedule(rough, noise, 1.0, 6, 3, CalibrationSettings(check=False, model_precision=told)).teacher_calls
             for told in ("float32", "bfloat16")}
    assert calls["bfloat16"] < calls["float32"] / 3, calls


def test_a_calibration_told_of_a_switch_splits_its_teacher_and_steps_across_it():
    """A prediction that is one constant above sigma 0.3 (a prompt scheduled to change there) and
    Gaussian data's below: told, the teacher ends a segment at the switch instead of crowding its steps
    onto it, and the schedule, run as exp_multistep runs it when sampling (restarting at the switch), lands
    closer to the closed form: DDIM is exact down to 0.3, and from there the Gaussian flow scales the
    distance to the mean by s / sqrt(s^2 + 0.3^2)."""
    gen = torch.Generator().manual_seed(3)
    above, mean, s = torch.randn((4, 8, 8), generator=gen), 0.4, 0.5

    def denoise(x, sigma):
        sigma = float(torch.as_tensor(sigma).flatten()[0])
        if sigma > 0.3:
            return above.expand_as(x).clone()
        return mean + s * s / (s * s + sigma * sigma) * (x - mean)

    noise = torch.randn((2, 4, 8, 8), generator=gen)
    at_switch = above + 0.3 * (noise - above)
    exact = mean + s / math.sqrt(s * s + 0.09) * (at_switch - mean)
    errors, calls = {}, {}
    for told in (True, False):
        breakpoints = [0.3] if told else []
        result = calibrate_schedule(denoise, noise, 1.0, 8, breakpoints=breakpoints)
        out, _ = solve_exp_multistep(denoise, noise.clone(), result.sigmas.tolist(), 3, breakpoints=breakpoints)
        errors[told], calls[told] = float((out - exact).abs().max()), result.teacher_calls
    assert calls[True] < calls[False], calls  # 25 against 39
    assert errors[True] < 0.6 * errors[False], errors  # 0.023 against 0.051


def test_the_nearest_sigma_moves_just_below_a_breakpoint():
    from flowanime.samplers.k_sampler import BREAKPOINT_GAP as g

    assert just_below_breakpoints([0.9, 0.5, 0.2, 0.001], [0.45]) == [0.9, 0.45 * (1 - g), 0.2, 0.001]
    assert just_below_breakpoints([0.9, 0.5, 0.2, 0.001], [0.21]) == [0.9, 0.5, 0.21 * (1 - g), 0.001]
    # outside the schedule; next to the first or the last sigma, which stay
    assert just_below_breakpoints([0.9, 0.5, 0.2, 0.001], [2.0, 0.0005, 0.0011, 0.89]) == [0.9, 0.5, 0.2, 0.001]
    # the second breakpoint's nearer sigma has moved already
    assert just_below_breakpoints([0.9, 0.5, 0.2, 0.001], [0.46, 0.45]) == [0.9, 0.46 * (1 - g), 0.2, 0.001]


class TensorWithoutFloat64(torch.Tensor):
    """A tensor on a device without float64 (Apple's MPS): widening it there raises MPS's error;
    `.cpu()` and `.to("cpu", ...)` leave the device."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        to_cpu = func is torch.Tensor.cpu or (func is torch.Tensor.to and "cpu" in [str(a) for a in args[1:]]
                                               + [str(kwargs.get("device"))])
        if to_cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).as_subclass(torch.Tensor)
        out = super().__torch_function__(func, types, args, kwargs)
        widened = isinstance(out, torch.Tensor) and out.dtype == torch.float64 and not any(
            isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args)
        if widened:
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")
        return out


def test_calibration_with_its_check_runs_on_a_device_without_float64():
    """ComfyUI moves the noise to the model's device; on a Mac that has no float64, so the check's
    error figures are computed on the CPU."""
    gmm, noise, _ = single_gaussian(batch=1, std=0.05)
    device_noise = noise.float().as_subclass(TensorWithoutFloat64)
    with pytest.raises(TypeError, match="float64"):
        device_noise.double()
    result = calibrate_schedule(gmm.denoise, device_noise, 1.0, 6, order=2, settings=CalibrationSettings(check=True))
    assert result.check_calls > 0 and math.isfinite(result.checked_error)
