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
from flowanime.samplers.multistep import exponential_adams_weights, solve_adams_pc

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
