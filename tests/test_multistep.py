"""The adaptive Adams predictor-corrector (samplers/multistep.py): its quadrature weights against
closed forms, its predictor and corrector orders on an ODE with a known solution, and the solver
against the exact Gaussian flow, the mixture reference, and the faults the Runge-Kutta solver handles."""

from __future__ import annotations

import math

import pytest
import torch

from flowanime.bench.gmm import GaussianMixture, reference_solution, rms_error, single_gaussian_flow
from flowanime.samplers.k_sampler import SamplerConfig, make_sampler_function
from flowanime.samplers.multistep import exponential_adams_weights, solve_adams_pc
from flowanime.samplers.ode import AdaptiveSettings, ModelOutputNotFinite, StepSizeCollapsed


def single_gaussian(batch=3, seed=0, std=0.05):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn((4, 8, 8), generator=gen) * 0.7
    noise = torch.randn((batch, 4, 8, 8), generator=gen)
    exact = torch.stack([single_gaussian_flow(mean, std, n, 0.0) for n in noise])
    return GaussianMixture.single(mean, std), noise, exact


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


def test_meets_its_tolerance_on_the_exact_gaussian_flow():
    gmm, noise, exact = single_gaussian()
    rtol, atol = 1e-4, 1e-5
    _, denoised, stats = solve_adams_pc(gmm.denoise, noise.double(), 1.0, 1e-4,
                                        AdaptiveSettings(rtol=rtol, atol=atol, max_model_calls=20000))
    assert rms_error(denoised, exact) < 10 * (atol + rtol * float(exact.abs().max())), stats.summary()
    assert not stats.budget_exhausted


def test_tighter_tolerance_gives_a_smaller_error():
    gmm, noise, exact = single_gaussian()
    errors = []
    for log_tol in (-2, -4, -6):
        settings = AdaptiveSettings(rtol=10**log_tol, atol=10 ** (log_tol - 1), max_model_calls=20000)
        errors.append(rms_error(solve_adams_pc(gmm.denoise, noise.double(), 1.0, 1e-4, settings)[1], exact))
    assert errors[0] > errors[1] > errors[2]


def test_mixture_flow_is_solved_to_the_reference_in_a_batch_and_alone():
    gmm = GaussianMixture.latent_like(shape=(4, 16, 16), components=8, seed=3, dtype=torch.float64)
    noise = gmm.sample_noise(3, seed=5, dtype=torch.float64)
    reference = reference_solution(gmm, noise)
    settings = AdaptiveSettings(rtol=1e-5, atol=1e-6, max_model_calls=5000)
    _, batched, stats = solve_adams_pc(gmm.denoise, noise, 1.0, 1e-4, settings)
    assert rms_error(batched, reference) < 1e-3, stats.summary()
    for i in range(3):
        _, alone, _ = solve_adams_pc(gmm.denoise, noise[i : i + 1], 1.0, 1e-4, settings)
        assert rms_error(alone, reference[i : i + 1]) < 1e-3


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


def test_hook_runs_on_every_model_call_and_can_interrupt():
    gmm, noise, _ = single_gaussian()
    count = [0]

    def hook():
        count[0] += 1
        if count[0] == 4:
            raise KeyboardInterrupt("interrupted")

    with pytest.raises(KeyboardInterrupt):
        solve_adams_pc(gmm.denoise, noise, 1.0, 1e-3, on_model_call=hook)
    assert count[0] == 4


def test_nan_from_the_model_gets_a_clear_error():
    gmm, noise, _ = single_gaussian()

    def broken(x, sigma):
        out = gmm.denoise(x, sigma)
        return out * float("nan") if sigma < 0.5 else out

    with pytest.raises(ModelOutputNotFinite, match="weight_dtype"):
        solve_adams_pc(broken, noise, 1.0, 1e-3)


def test_spent_budget_completes_the_image_with_a_warning():
    gmm, noise, _ = single_gaussian()
    logged = []
    x, denoised, stats = solve_adams_pc(gmm.denoise, noise, 1.0, 1e-3,
                                        AdaptiveSettings(rtol=1e-8, atol=1e-9, max_model_calls=6), log=logged.append)
    assert stats.budget_exhausted and stats.model_calls <= 6 and denoised is None
    assert torch.isfinite(x).all() and "max_model_calls" in logged[0]


def test_a_step_that_shrinks_to_nothing_stops_with_a_clear_error():
    def singular(x, sigma):  # blows up at sigma = 0.5: no step is small enough to cross it
        return torch.full_like(x, 1.0 / abs(sigma - 0.5) ** 3)

    with pytest.raises(StepSizeCollapsed, match="log10_rtol"):
        solve_adams_pc(singular, torch.zeros(1, 4), 1.0, 1e-3, AdaptiveSettings(max_model_calls=10**6))


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
