"""The adaptive Adams predictor-corrector (samplers/multistep.py): its quadrature weights against
closed forms, its predictor and corrector orders on an ODE with a known solution, one call per step,
previews, and its use as a ComfyUI sampler function. The contract it shares with the Runge-Kutta
solver (tolerance, mixture reference, batch, hooks, faults) is tested in test_rk_solvers.py."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from solver_problems import single_gaussian

from flowanime.bench.gmm import GaussianMixture, rms_error, single_gaussian_flow
from flowanime.bench.problems import gmm_wide
from flowanime.samplers.k_sampler import SamplerConfig, make_sampler_function
from flowanime.samplers.multistep import (
    LOG_SIGMA_FORM,
    _solve_fixed_multistep,
    adams_weights,
    exponential_adams_weights,
    solve_adams_pc,
    solve_exp_multistep,
    solve_flow_adams_pc,
    solve_flow_multistep,
    usable_flow_order,
)
from flowanime.samplers.ode import AdaptiveSettings

# --- the weights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("h", [0.01, 0.5, 2.0, 4.0])
def test_weights_match_the_closed_forms(h):
    """One node: DDIM's 1 - e^-h. Two nodes (lambda - r, lambda): DPM-Solver++(2M)'s exact integrals
    of the linear interpolant, from int e^(s-h) ds = 1 - e^-h and int e^(s-h) s ds = h - (1 - e^-h)."""
    phi = 1 - math.exp(-h)
    assert exponential_adams_weights([0.0], 0.0, h) == pytest.approx([phi], rel=1e-12)
    r = 0.7
    first_moment = h - phi
    expected = [-first_moment / r, first_moment / r + phi]
    assert exponential_adams_weights([-r, 0.0], 0.0, h) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def _solve_linear(steps, corrector: bool, order: int):
    """x' = D(lambda) - x with D = sin(lambda), on [0, 3] with fixed steps, Adams predictor of `order`
    (corrected with the new node when asked). Exact: x = C e^-lambda + (sin - cos)/2. The history
    starts with exact values before 0, so every step runs at full order."""
    h = 3.0 / steps
    lam_grid = [h * i for i in range(steps + 1)]
    nodes = [-h * i for i in range(order - 1, -1, -1)]
    x, values = 1.0, [math.sin(n) for n in nodes]
    for a, b in zip(lam_grid, lam_grid[1:]):
        k = min(order, len(nodes))
        used_nodes, used = nodes[-k:], values[-k:]
        if corrector:
            used_nodes, used = [*used_nodes, b], [*used, math.sin(b)]
        w = exponential_adams_weights(used_nodes, a, b)
        x = math.exp(-(b - a)) * x + sum(wi * v for wi, v in zip(w, used))
        nodes.append(b)
        values.append(math.sin(b))
    c = 1.0 + 0.5  # x(0) = C + (0 - 1)/2 = 1
    exact = c * math.exp(-3.0) + (math.sin(3.0) - math.cos(3.0)) / 2
    return abs(x - exact)


@pytest.mark.parametrize("corrector, order, expected",
                         [(False, 1, 1), (False, 2, 2), (False, 3, 3), (True, 1, 2), (True, 2, 3), (True, 3, 4)])
def test_predictor_and_corrector_converge_at_their_orders(corrector, order, expected):
    errors = [_solve_linear(n, corrector, order) for n in (40, 80, 160)]
    rates = [math.log2(e1 / e2) for e1, e2 in zip(errors, errors[1:])]
    assert rates[-1] == pytest.approx(expected, abs=0.2), rates


# --- the solver -----------------------------------------------------------------------------------------


def test_one_model_call_per_step_on_the_whole_batch_in_its_dtype():
    gmm, noise, _ = single_gaussian(batch=5)
    seen = []

    def denoiser(x, sigma):
        seen.append((x.shape[0], x.dtype))
        return gmm.denoise(x, sigma)

    x, denoised, stats = solve_adams_pc(denoiser, noise.float(), 1.0, 1e-3)
    assert stats.model_calls == len(seen) == 1 + stats.accepted + stats.rejected
    assert set(seen) == {(5, torch.float32)} and x.dtype == denoised.dtype == torch.float32


def test_previews_come_from_the_accepted_points_and_progress_reaches_one():
    gmm, noise, _ = single_gaussian()
    infos = []
    solve_adams_pc(gmm.denoise, noise, 1.0, 1e-3, on_step=infos.append)
    sigmas = [i.sigma for i in infos]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] == pytest.approx(1e-3)
    assert infos[-1].progress == pytest.approx(1.0) and all(torch.isfinite(i.denoised).all() for i in infos)


def test_as_a_comfyui_sampler_function_it_ends_on_the_denoised_prediction():
    gmm, noise, exact = single_gaussian()

    class Model:  # what KSAMPLER hands a sampler function, without ComfyUI
        def __call__(self, x, sigma, **kwargs):
            return gmm.denoise(x, sigma)

    sample = make_sampler_function(SamplerConfig("adams_pc", -4, -5))
    out = sample(Model(), noise.clone(), torch.tensor([1.0, 0.5, 0.0]), disable=True)
    assert rms_error(out, exact) < 1e-3


def test_a_partial_pass_ends_on_the_latent_at_its_last_sigma():
    gmm, noise, _ = single_gaussian()
    mean, std = gmm.means[0].reshape(4, 8, 8), float(gmm.stds[0])
    exact = torch.stack([single_gaussian_flow(mean, std, n, 0.4) for n in noise])

    class Model:
        def __call__(self, x, sigma, **kwargs):
            return gmm.denoise(x, sigma)

    out = make_sampler_function(SamplerConfig("adams_pc", -5, -6))(Model(), noise.clone(), torch.tensor([1.0, 0.6, 0.4]),
                                                                   disable=True)
    assert rms_error(out, exact) < 1e-4


# --- exp_multistep: the same predictor-corrector on a given schedule --------------------------------


def _lambda_uniform(n, sigma_end):
    return [math.exp(-lam) for lam in torch.linspace(0.0, -math.log(sigma_end), n + 1).tolist()]


@pytest.mark.parametrize("order, expected_rate", [(1, 2.0), (2, 3.0), (3, 3.6)])
def test_exp_multistep_converges_at_the_corrector_order(order, expected_rate):
    """On a Gaussian (closed-form flow), in float64, to sigma 0.02: the error falls as h^(order + 1)
    (order 3 is held near 4 by its lower-order start, so at least 3.6 here)."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.3, sigma_end=0.02, dtype=torch.float64)
    errors = []
    for n in (8, 16, 32):
        out, stats = solve_exp_multistep(gmm.denoise, noise.clone(), _lambda_uniform(n, 0.02), order)
        assert stats.model_calls == n  # one call per sigma but the last (no corrector after it)
        errors.append(float((out - exact).abs().max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) >= expected_rate - 0.25, rates


def test_exp_multistep_to_zero_returns_the_last_denoised_prediction():
    gmm, noise, exact = single_gaussian(batch=2, std=0.3)
    sigmas = [1.0, 0.5, 0.2, 0.05, 0.01, 0.0]
    calls = []

    def denoiser(x, sigma):
        calls.append(sigma)
        return gmm.denoise(x, sigma)

    infos = []
    out, stats = solve_exp_multistep(denoiser, noise.clone(), sigmas, 3, on_step=infos.append)
    assert calls == sigmas[:-1] and stats.model_calls == 5
    assert [i.sigma for i in infos] == sigmas[1:] and infos[-1].progress == 1.0
    assert torch.equal(out, infos[-1].denoised)
    fine = [*_lambda_uniform(12, 0.005), 0.0]
    third, _ = solve_exp_multistep(gmm.denoise, noise.clone(), fine, 3)
    first, _ = solve_exp_multistep(gmm.denoise, noise.clone(), fine, 1)  # DDIM
    assert rms_error(third, exact) < 0.2 * rms_error(first, exact)


def test_exp_multistep_takes_a_long_last_step_in_two_stages():
    """The step onto the last sigma before 0, more than LONG_STEP_RATIO times the one before (ComfyUI's
    `normal` schedule ends so), costs one more call, at its midpoint in log sigma, and on a Gaussian
    (closed-form flow) ends nearer the exact image than the history's extrapolation over it. A
    schedule without such a step runs exactly as before."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.05)
    extrapolating = dataclasses.replace(LOG_SIGMA_FORM, long_step_ratio=math.inf)
    sigmas = [1.0, 0.8, 0.6, 0.4, 0.01, 0.0]  # the last step is 9 times the one before in log sigma
    calls = []

    def denoiser(x, sigma):
        calls.append(sigma)
        return gmm.denoise(x, sigma)

    staged, stats = solve_exp_multistep(denoiser, noise.clone(), sigmas, 3)
    assert stats.model_calls == 6 and calls[-2] == pytest.approx(math.sqrt(0.4 * 0.01)) and calls[-1] == 0.01
    extrapolated, plain = _solve_fixed_multistep(extrapolating, gmm.denoise, noise.clone(), sigmas, 3, None, None)
    assert plain.model_calls == 5
    assert rms_error(staged, exact) < 0.5 * rms_error(extrapolated, exact)
    even = [*_lambda_uniform(6, 0.01), 0.0]
    same, same_stats = solve_exp_multistep(gmm.denoise, noise.clone(), even, 3)
    before, _ = _solve_fixed_multistep(extrapolating, gmm.denoise, noise.clone(), even, 3, None, None)
    assert same_stats.model_calls == 7 and torch.equal(same, before)


def test_exp_multistep_takes_a_long_last_step_of_a_schedule_ending_above_zero_in_two_stages():
    """A schedule ending at a small sigma (ComfyUI 0.3.64's uni_pc writes 0.001 over a shared SIGMAS
    output's final 0): its last step has no call left for a corrector, so, when long, it is staged as
    the step onto the last sigma before 0 is. Extrapolated, a Gaussian's image ended 0.5 off on the SD3
    stand-in's `beta` 12 steps (README)."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.05, sigma_end=0.001)
    sigmas = [1.0, 0.8, 0.6, 0.4, 0.2, 0.001]  # the last step is 7.6 times the one before in log sigma
    extrapolating = dataclasses.replace(LOG_SIGMA_FORM, long_step_ratio=math.inf)
    staged, stats = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas, 3)
    extrapolated, plain = _solve_fixed_multistep(extrapolating, gmm.denoise, noise.clone(), sigmas, 3, None, None)
    assert stats.model_calls == plain.model_calls + 1 == 6
    assert rms_error(staged, exact) < 0.6 * rms_error(extrapolated, exact)


def test_exp_multistep_through_the_sampler_function_matches_the_solver():
    gmm, noise, _ = single_gaussian(batch=2, std=0.3)
    sigmas = torch.tensor([1.0, 0.6, 0.3, 0.1, 0.02, 0.0])

    class Model:
        calls = 0

        def __call__(self, x, sigma, **kwargs):
            Model.calls += 1
            return gmm.denoise(x, sigma)

    out = make_sampler_function(SamplerConfig("exp_multistep", order=2))(Model(), noise.clone(), sigmas, disable=True)
    direct, _ = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas.tolist(), 2)
    assert Model.calls == 5
    assert torch.allclose(out, direct)
    with pytest.raises(ValueError, match="'order' must be 1, 2 or 3"):
        SamplerConfig("exp_multistep", order=4)


# --- flow_multistep: Adams on the velocity in sigma, on a given schedule -----------------------------


@pytest.mark.parametrize("h", [0.01, 0.3, -0.2])
def test_adams_weights_match_the_classical_formulas(h):
    """Equal steps h: Euler (h), Adams-Bashforth 2 (-h/2, 3h/2) and 3 (5h/12, -16h/12, 23h/12), the
    trapezoid (h/2, h/2) and Adams-Moulton 3 (-h/12, 8h/12, 5h/12)."""
    s = 0.7
    assert adams_weights([s], s, s + h) == pytest.approx([h], rel=1e-12)
    assert adams_weights([s - h, s], s, s + h) == pytest.approx([-h / 2, 3 * h / 2], rel=1e-12)
    assert adams_weights([s - 2 * h, s - h, s], s, s + h) == pytest.approx([5 * h / 12, -16 * h / 12, 23 * h / 12],
                                                                           rel=1e-12)
    assert adams_weights([s, s + h], s, s + h) == pytest.approx([h / 2, h / 2], rel=1e-12)
    assert adams_weights([s - h, s, s + h], s, s + h) == pytest.approx([-h / 12, 8 * h / 12, 5 * h / 12], rel=1e-12)
    assert adams_weights([s - h, s], s, s) == exponential_adams_weights([s - h, s], s, s) == [0.0, 0.0]


def test_flow_multistep_follows_a_straight_path_exactly():
    """A data distribution of one point: the velocity is constant along each path, so any schedule,
    however coarse, ends exactly on it (Euler's polynomial already is the velocity)."""
    point = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for order in (1, 2, 3):
        for sigmas in ([1.0, 0.0], [1.0, 0.9, 0.2, 0.0], [1.0, 0.999, 0.5, 0.01, 0.0]):
            out, stats = solve_flow_multistep(lambda x, sigma: point, noise.clone(), sigmas, order)
            # a one-step schedule takes a midpoint call at order 2 and up (the next test)
            assert stats.model_calls == len(sigmas) - 1 + (len(sigmas) == 2 and order >= 2)
            assert torch.allclose(out, point, rtol=0, atol=1e-10)


@pytest.mark.parametrize("order, expected_rate", [(1, 2.0), (2, 3.0), (3, 3.0)])
def test_flow_multistep_converges_at_the_corrector_order(order, expected_rate):
    """On a Gaussian (closed-form flow), in float64, with equal steps in sigma from 1 to 0: the error
    at sigma 0 falls as h^(order + 1), the corrector's order; order 3 is held at 3 by its first step,
    whose predictor has no history (order 1, corrected to 2: a local error of h^3)."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.3)
    gmm, noise, exact = gmm.to(torch.float64), noise.double(), exact.double()
    errors = []
    for n in (32, 64, 128, 256):  # the Gaussian's velocity bends near sigma = std: rates settle from 32 steps
        sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64).tolist()
        out, stats = solve_flow_multistep(gmm.denoise, noise.clone(), sigmas, order)
        assert stats.model_calls == n  # one call per sigma above 0, none at 0
        errors.append(float((out - exact).abs().max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates[1:]) >= expected_rate - 0.25, rates


@pytest.mark.parametrize("order", [2, 3])
def test_flow_multistep_one_step_to_zero_is_second_order(order):
    """A schedule of one step to 0 (the second pass of a KSamplerAdvanced split at the last step) has
    no history: Euler's step would be first order, its local error h^2. With a midpoint call the step
    is second order: started on the Gaussian's exact path at sigma h, its error falls as h^3 (a review
    helper found the split run 10 times further from the image than the unsplit one, 9.5e-2 against
    9.5e-3, on the SD3 stand-in)."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.3, dtype=torch.float64)
    mean = gmm.means[0].reshape(gmm.shape)
    errors, euler = [], []
    for h in (0.04, 0.02, 0.01):  # where the rates have settled
        start = torch.stack([single_gaussian_flow(mean, 0.3, n, h) for n in noise])
        out, stats = solve_flow_multistep(gmm.denoise, start.clone(), [h, 0.0], order)
        assert stats.model_calls == 2
        errors.append(float((out - exact).abs().max()))
        euler.append(float((solve_flow_multistep(gmm.denoise, start.clone(), [h, 0.0], 1)[0] - exact).abs().max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) >= 2.75 and all(e < u / 4 for e, u in zip(errors, euler)), (rates, errors, euler)


def test_flow_multistep_drops_order_3_to_2_on_a_step_much_longer_than_its_history():
    assert usable_flow_order(3, [1.0, 0.99, 0.98], 0.97) == 3
    assert usable_flow_order(3, [1.0, 0.99, 0.98], 0.959) == 2  # more than twice the shortest gap
    assert usable_flow_order(3, [1.0, 0.5, 0.49], 0.0) == 2 and usable_flow_order(2, [1.0, 0.99], 0.0) == 2
    assert usable_flow_order(3, [1.0], 0.5) == 1  # the first step has no history


def test_flow_multistep_order_3_stays_near_order_2_after_tiny_first_steps():
    """`linear_quadratic`'s shape (tiny steps near sigma 1, then long ones), on the benchmark's wide
    mixture against its DOP853 reference: a cubic through three nearly equal sigmas, extrapolated
    over a step 40 times longer, ended 4.1 (RMS) from the image where order 2 ends 0.50."""
    problem = gmm_wide()
    noise = problem.noise(4)
    reference = problem.reference(noise)
    sigmas = [1.0, 0.9958, 0.9917, 0.9875, 0.8, 0.5, 0.2, 0.0]
    order_2, order_3 = (rms_error(solve_flow_multistep(problem.denoise, noise.clone(), sigmas, order)[0], reference)
                        for order in (2, 3))
    assert order_3 <= 2 * order_2, (order_2, order_3)


def test_flow_multistep_reports_each_step_and_ends_on_the_image():
    gmm, noise, exact = single_gaussian(batch=2, std=0.3)
    sigmas = [1.0, 0.5, 0.2, 0.05, 0.01, 0.0]
    calls, infos = [], []

    def denoiser(x, sigma):
        calls.append(sigma)
        return gmm.denoise(x, sigma)

    out, stats = solve_flow_multistep(denoiser, noise.clone(), sigmas, 2, on_step=infos.append)
    assert calls == sigmas[:-1] and stats.model_calls == 5
    assert [i.sigma for i in infos] == sigmas[1:] and infos[-1].progress == 1.0
    assert torch.equal(out, infos[-1].x) and torch.equal(out, infos[-1].denoised)
    partial, _ = solve_flow_multistep(gmm.denoise, noise.clone(), sigmas[:4], 2)  # ends at 0.05: no call there
    assert rms_error(partial, torch.stack([single_gaussian_flow(gmm.means[0].reshape(gmm.shape), 0.3, n, 0.05)
                                           for n in noise])) < 0.05


def test_flow_multistep_through_the_sampler_function_matches_the_solver():
    gmm, noise, _ = single_gaussian(batch=2, std=0.3)
    sigmas = torch.tensor([1.0, 0.6, 0.3, 0.1, 0.02, 0.0])

    def model(x, sigma, **kwargs):
        return gmm.denoise(x, sigma)

    assert SamplerConfig("flow_multistep").multistep_order == 2
    assert SamplerConfig("exp_multistep").multistep_order == 3
    assert SamplerConfig("dopri5").multistep_order is None
    for order in (None, 3):
        out = make_sampler_function(SamplerConfig("flow_multistep", order=order))(model, noise.clone(), sigmas,
                                                                                   disable=True)
        direct, _ = solve_flow_multistep(gmm.denoise, noise.clone(), sigmas.tolist(), order or 2)
        assert torch.allclose(out, direct)


# --- flow_adams_pc: the adaptive predictor-corrector on the velocity in sigma -----------------------


def test_flow_adams_pc_takes_long_steps_on_straight_paths():
    """A one-point data distribution: every path is straight, the velocity constant, so the error
    estimate is 0 and each step grows by the controller's limit; the result is exact. adams_pc's
    log-sigma steps (also exact here) need more calls to reach the same sigma."""
    point = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x, denoised, flow_stats = solve_flow_adams_pc(lambda x, sigma: point, noise.clone(), 1.0, 1e-3)
    assert torch.allclose(x, 1e-3 * noise + (1 - 1e-3) * point, rtol=0, atol=1e-10)
    assert torch.equal(denoised, point) and flow_stats.rejected == 0
    _, _, log_stats = solve_adams_pc(lambda x, sigma: point, noise.clone(), 1.0, 1e-3)
    assert flow_stats.model_calls < log_stats.model_calls


def test_flow_adams_pc_error_falls_with_the_tolerance():
    """On a Gaussian (closed form) in float64: each decade of tolerance lowers the error, and the
    error stays within a small multiple of the tolerance."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.3)
    gmm, noise, exact = gmm.to(torch.float64), noise.double(), exact.double()
    errors = []
    for tol in (1e-2, 1e-3, 1e-4, 1e-5):
        _, denoised, stats = solve_flow_adams_pc(gmm.denoise, noise.clone(), 1.0, 1e-5,
                                                 AdaptiveSettings(rtol=tol, atol=tol / 10))
        assert not stats.budget_exhausted and stats.model_calls == 1 + stats.accepted + stats.rejected
        errors.append(rms_error(denoised, exact))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4, errors


def test_flow_adams_pc_through_the_sampler_function():
    gmm, noise, exact = single_gaussian()

    def model(x, sigma, **kwargs):
        return gmm.denoise(x, sigma)

    out = make_sampler_function(SamplerConfig("flow_adams_pc", -4, -5))(model, noise.clone(), torch.tensor([1.0, 0.0]),
                                                                        disable=True)
    assert rms_error(out, exact) < 1e-3


def rough_gaussian_model(roughness: float = 0.03):
    """The exact Gaussian flow's denoiser with the roughness of a half-precision network: 3 % of |v|
    added by default, deterministic in x and varying on a scale far below the steps (a bfloat16 MMDiT
    measured 3e-2 RMS against its float32 self; float16 keeps 3 more bits)."""
    mean = torch.full((4, 16, 16), 0.3)
    gmm = GaussianMixture.single(mean, 0.5)

    def denoise(x, sigma):
        d = gmm.denoise(x, sigma)
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        v = (x - d) / s
        return x - s * (v + roughness * v.abs() * torch.sin(12345.0 * x))

    return denoise, mean


@pytest.mark.parametrize("solver", [solve_adams_pc, solve_flow_adams_pc])
@pytest.mark.parametrize("precision, roughness, fewer_calls", [("bfloat16", 0.03, 4), ("float16", 0.004, 1.2)])
def test_a_half_precision_model_does_not_collapse_the_steps(solver, precision, roughness, fewer_calls):
    """The model's roughness keeps the error ratio up, where the float32 controller (safety 0.5) shrinks
    every accepted step: told the model's precision, the solve holds its steps and lands as close to
    the exact image as the roughness allows."""
    denoise, mean = rough_gaussian_model(roughness)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = torch.stack([single_gaussian_flow(mean, 0.5, n, 0.0) for n in x])
    runs = {}
    for told in ("float32", precision):
        settings = AdaptiveSettings(rtol=10**-2.5, atol=10**-3.5, max_model_calls=300, model_precision=told)
        out, _, stats = solver(denoise, x.clone(), 1.0, 1e-3, settings)
        runs[told] = (stats.model_calls, float((out - exact).pow(2).mean().sqrt()))
    (calls32, err32), (calls_half, err_half) = runs["float32"], runs[precision]
    assert calls_half < calls32 / fewer_calls, runs
    assert err_half < 1.3e-2 and err_half < 3 * err32 + 1e-3, runs
    if precision == "bfloat16":
        assert calls32 > 150, runs


@pytest.mark.parametrize("solver", [solve_adams_pc, solve_flow_adams_pc])
def test_a_smooth_model_told_float16_stays_close(solver):
    """float16 rounds finely enough that its looser controller must still meet the accuracy the
    entries promise where the model is smooth (a safety of 0.9 let adams_pc land 3x further off than
    at 0.5 here, and 1.1e-2 off in a hard-masked inpainting)."""
    denoise, mean = rough_gaussian_model(0.0)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = torch.stack([single_gaussian_flow(mean, 0.5, n, 0.0) for n in x])
    errors = {}
    for told in ("float32", "float16"):
        settings = AdaptiveSettings(rtol=10**-2.5, atol=10**-3.5, max_model_calls=300, model_precision=told)
        out, _, _ = solver(denoise, x.clone(), 1.0, 1e-3, settings)
        errors[told] = float((out - exact).pow(2).mean().sqrt())
    assert errors["float16"] < 2 * errors["float32"] and errors["float16"] < 2e-3, errors


def test_an_unknown_model_precision_is_named():
    """A misspelt dtype would otherwise fall back to the float32 controller without a word."""
    with pytest.raises(ValueError, match="model_precision"):
        AdaptiveSettings(model_precision="fp16")
