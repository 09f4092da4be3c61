"""The adaptive Adams predictor-corrector (samplers/multistep.py): its quadrature weights against
closed forms, its predictor and corrector orders on an ODE with a known solution, one call per step,
previews, and its use as a ComfyUI sampler function. The contract it shares with the Runge-Kutta
solver (tolerance, mixture reference, batch, hooks, faults) is tested in test_rk_solvers.py."""

from __future__ import annotations

import math

import pytest
import torch
from solver_problems import single_gaussian

from flowanime.bench.gmm import rms_error, single_gaussian_flow
from flowanime.samplers.k_sampler import SamplerConfig, make_sampler_function
from flowanime.samplers.multistep import exponential_adams_weights, solve_adams_pc, solve_exp_multistep

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
    gmm, noise, _ = single_gaussian(batch=2, std=0.3)
    gmm, noise = gmm.to(torch.float64), noise.double()
    mean = gmm.means[0].reshape(gmm.shape)
    exact = torch.stack([single_gaussian_flow(mean, 0.3, n, 0.02) for n in noise])
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
