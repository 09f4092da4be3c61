"""exp_singlestep and exp_multistep_staged_end (samplers/singlestep.py): the weights against the
quadrature the multistep methods use, their orders on a flow with a closed form, the interval to
sigma 0, and their use as sampler functions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from solver_problems import single_gaussian

from flowanime.bench.gmm import GaussianMixture, rms_error, single_gaussian_flow
from flowanime.samplers.k_sampler import SamplerConfig, make_sampler_function
from flowanime.samplers.multistep import exponential_adams_weights, solve_exp_multistep
from flowanime.samplers.singlestep import (
    SERIES_BELOW,
    line_weights,
    solve_exp_multistep_staged_end,
    solve_exp_singlestep,
)


@given(reach=st.floats(-3.0, 8.0).filter(lambda r: abs(r) > 1e-9), share=st.floats(0.05, 1.0))
def test_line_weights_are_the_exponential_integrals_of_the_line(reach, share):
    """The closed forms (a series for short reaches) against the Gauss-Legendre integrals of the
    Lagrange basis that exp_multistep uses, for either sign of the step."""
    node = share * reach
    expected = exponential_adams_weights([0.0, node], 0.0, reach)
    assert line_weights(reach, node) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert line_weights(reach, None)[0] == pytest.approx(exponential_adams_weights([0.0], 0.0, reach)[0], rel=1e-9)


def test_the_series_meets_the_closed_form_at_its_threshold():
    below, above = line_weights(SERIES_BELOW * (1 - 1e-9), SERIES_BELOW / 2), line_weights(SERIES_BELOW, SERIES_BELOW / 2)
    assert below == pytest.approx(above, rel=1e-8)


def _lambda_uniform(n, sigma_end):
    return [math.exp(-lam) for lam in torch.linspace(0.0, -math.log(sigma_end), n + 1).tolist()]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_exp_singlestep_converges_at_its_order_with_order_calls_per_step(order):
    """On a Gaussian (closed-form flow), in float64, to sigma 0.02: the error falls as h^order (order 3
    from 2.9 at these steps, towards 3)."""
    gmm, noise, exact = single_gaussian(batch=2, std=1.0, sigma_end=0.02, dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        out, stats = solve_exp_singlestep(gmm.denoise, noise.clone(), _lambda_uniform(n, 0.02), order)
        assert stats.model_calls == order * n
        errors.append(float((out - exact).abs().max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) >= order - 0.25, rates


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_point_mass_is_reached_exactly_from_any_schedule(order):
    """D constant (all data at one point): the flow is a straight line to it, and every order, the
    interval to sigma 0 with its sliver below sigma_floor included, ends on it to rounding."""
    point = torch.full((2, 4, 8, 8), 0.37, dtype=torch.float64)
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sigmas in ([1.0, 0.0], [1.0, 0.9, 0.2, 0.0], [0.7, 0.3, 1e-4, 0.0]):
        out, _ = solve_exp_singlestep(lambda x, sigma: point, noise.clone(), sigmas, order)
        assert torch.allclose(out, point, atol=1e-12)


def test_the_interval_to_zero_runs_its_stages_down_to_sigma_floor():
    """[1, 0.5, 0] at order 3: the second step's stages sit at 1/3 and 2/3 of log(0.5 / sigma_floor), and
    on a narrow Gaussian the image is far nearer the exact one than exp_multistep's jump to the last
    denoised prediction (9 times here), and nearer at order 3 than at order 2."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.05)
    calls = []

    def denoiser(x, sigma):
        calls.append(sigma)
        return gmm.denoise(x, sigma)

    out, stats = solve_exp_singlestep(denoiser, noise.clone(), [1.0, 0.5, 0.0], 3, sigma_floor=1e-3)
    h = math.log(0.5 / 1e-3)
    assert stats.model_calls == 6
    assert calls[3:] == pytest.approx([0.5, 0.5 * math.exp(-h / 3), 0.5 * math.exp(-2 * h / 3)])
    jumped, _ = solve_exp_multistep(gmm.denoise, noise.clone(), [1.0, 0.5, 0.0], 3)
    second, _ = solve_exp_singlestep(gmm.denoise, noise.clone(), [1.0, 0.5, 0.0], 2, sigma_floor=1e-3)
    assert rms_error(out, exact) < 0.2 * rms_error(jumped, exact)
    assert rms_error(out, exact) < rms_error(second, exact)


def test_a_last_sigma_below_the_floor_returns_its_denoised_prediction():
    gmm, noise, _ = single_gaussian(batch=2, std=0.3)
    infos = []
    out, stats = solve_exp_singlestep(gmm.denoise, noise.clone(), [1.0, 5e-4, 0.0], 3, on_step=infos.append,
                                      sigma_floor=1e-3)
    assert stats.model_calls == 4
    assert torch.equal(out, infos[-1].denoised) and infos[-1].sigma == 0.0 and infos[-1].progress == 1.0
    # a last sigma on the floor but for float32 rounding is on it: no stages over the rounding
    on_floor = float(torch.tensor(1e-3, dtype=torch.float32))
    assert on_floor > 1e-3
    for solve, calls in ((solve_exp_singlestep, 3 + 1), (solve_exp_multistep_staged_end, 2)):
        _, stats = solve(gmm.denoise, noise.clone(), [1.0, on_floor, 0.0], 3, sigma_floor=1e-3)
        assert stats.model_calls == calls


def test_a_rising_schedule_integrates_back_to_the_noise():
    """Inversion: from the exact point at sigma 0.05 up to 1 gives back the noise it came from."""
    gmm, noise, _ = single_gaussian(batch=2, std=0.3)
    gmm, noise = gmm.to(torch.float64), noise.double()
    mean = gmm.means[0].reshape(gmm.shape)
    start = torch.stack([single_gaussian_flow(mean, 0.3, n, 0.05) for n in noise])
    out, _ = solve_exp_singlestep(gmm.denoise, start, _lambda_uniform(24, 0.05)[::-1], 3)
    assert torch.allclose(out, noise, atol=1e-4), float((out - noise).abs().max())


@pytest.mark.parametrize("method, sigmas, stage_sigma", [
    ("exp_singlestep", [1.0, 0.0], lambda floor: math.sqrt(floor)),
    ("exp_multistep_staged_end", [1.0, 0.5, 0.0], lambda floor: math.sqrt(0.5 * floor)),
])
def test_through_the_sampler_function_the_interval_to_zero_ends_at_the_models_floor(method, sigmas, stage_sigma):
    """SamplerConfig's sigma_min, or the model's smallest trained sigma when larger (an eps model's),
    is where the interval to 0 ends: at order 2 its one stage sits at the middle of it in log sigma."""
    solve = {"exp_singlestep": solve_exp_singlestep, "exp_multistep_staged_end": solve_exp_multistep_staged_end}[method]
    gmm = GaussianMixture.single(torch.zeros(4, 8, 8), 0.3)
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(1))

    class Model:
        def __init__(self):
            self.sigmas = []

        def __call__(self, x, sigma, **kwargs):
            self.sigmas.append(float(sigma[0]))
            return gmm.denoise(x, sigma)

    assert SamplerConfig(method).multistep_order == 3
    for floor, expected in ((0.0, 1e-3), (0.0292, 0.0292)):
        model = Model()
        out = make_sampler_function(SamplerConfig(method, order=2), sigma_floor=lambda m, f=floor: f)(
            model, noise.clone(), torch.tensor(sigmas), disable=True)
        assert model.sigmas == pytest.approx([*sigmas[:-1], stage_sigma(expected)])
        direct, _ = solve(gmm.denoise, noise.clone(), sigmas, 2, sigma_floor=expected)
        assert torch.allclose(out, direct)


@pytest.mark.parametrize("order, expected_rate", [(1, 1.8), (2, 2.7), (3, 3.6)])
def test_exp_multistep_staged_end_converges_at_the_corrector_order(order, expected_rate):
    """All the way to sigma 0 on a Gaussian, in float64: the multistep part converges as h^(order + 1)
    (its corrector's order) and the staged interval to 0, one step of local error h^(order + 1), keeps
    it there. The grid is uniform in log sigma down to sigma_floor, its last point replaced by 0, so the
    last interval is one grid step long; n + order - 1 calls on n steps."""
    floor = 1e-4
    gmm, noise, exact = single_gaussian(batch=2, std=0.3, dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        sigmas = _lambda_uniform(n, floor)[:-1] + [0.0]
        out, stats = solve_exp_multistep_staged_end(gmm.denoise, noise.clone(), sigmas, order, sigma_floor=floor)
        assert stats.model_calls == n + order - 1
        errors.append(float((out - exact).abs().max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) >= expected_rate, rates


def test_exp_multistep_staged_end_calls_once_per_sigma_then_stages_the_last_interval():
    """[1, 0.8, 0.5, 0.3, 0] at order 3: one call per sigma as exp_multistep makes them, then two at
    1/3 and 2/3 of log(0.3 / sigma_floor); order 1 adds none and is exp_multistep itself."""
    gmm, noise, _ = single_gaussian(batch=2, std=0.05)
    calls = []

    def denoiser(x, sigma):
        calls.append(sigma)
        return gmm.denoise(x, sigma)

    sigmas = [1.0, 0.8, 0.5, 0.3, 0.0]
    _, stats = solve_exp_multistep_staged_end(denoiser, noise.clone(), sigmas, 3, sigma_floor=1e-3)
    h = math.log(0.3 / 1e-3)
    assert stats.model_calls == 6 and stats.method == "exp_multistep_staged_end (order 3)"
    assert calls == pytest.approx([1.0, 0.8, 0.5, 0.3, 0.3 * math.exp(-h / 3), 0.3 * math.exp(-2 * h / 3)])
    first, _ = solve_exp_multistep_staged_end(gmm.denoise, noise.clone(), sigmas, 1, sigma_floor=1e-3)
    jumped, _ = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas, 1)
    assert torch.allclose(first, jumped, atol=1e-6)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_exp_multistep_staged_end_reaches_a_point_mass_exactly(order):
    point = torch.full((2, 4, 8, 8), -0.21, dtype=torch.float64)
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for sigmas in ([1.0, 0.0], [1.0, 0.975, 0.719, 0.0], [0.7, 0.3, 1e-4, 0.0]):
        out, _ = solve_exp_multistep_staged_end(lambda x, sigma: point, noise.clone(), sigmas, order)
        assert torch.allclose(out, point, atol=1e-12)


def test_exp_multistep_staged_end_beats_the_jump_to_the_last_prediction_on_a_short_schedule():
    """A 3-step schedule with a long last step ([1, 0.975, 0.719, 0]; exp_multistep stages its step onto
    0.719, one call more) on a narrow Gaussian: exp_multistep's jump from 0.719 to the denoised
    prediction there ends 0.052 (RMS) from the exact image; the staged interval at order 3 ends 15 times
    nearer (0.0033), at order 2 nearer than the jump and farther than order 3."""
    gmm, noise, exact = single_gaussian(batch=2, std=0.05)
    sigmas = [1.0, 0.975, 0.719, 0.0]
    jumped, _ = solve_exp_multistep(gmm.denoise, noise.clone(), sigmas, 3)
    staged = {order: solve_exp_multistep_staged_end(gmm.denoise, noise.clone(), sigmas, order, sigma_floor=1e-3)
              for order in (2, 3)}
    assert staged[3][1].model_calls == 6  # 3 sigmas, the staging onto 0.719, 2 stages after it
    assert rms_error(staged[3][0], exact) < 0.1 * rms_error(jumped, exact)
    assert rms_error(staged[3][0], exact) < rms_error(staged[2][0], exact) < 0.5 * rms_error(jumped, exact)


def test_exp_multistep_staged_end_rejects_a_bad_order_or_floor():
    gmm, noise, _ = single_gaussian(batch=1)
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        solve_exp_multistep_staged_end(gmm.denoise, noise, [1.0, 0.0], 4)
    with pytest.raises(ValueError, match="sigma_floor must be between 0 and 1"):
        solve_exp_multistep_staged_end(gmm.denoise, noise, [1.0, 0.0], 3, sigma_floor=0.0)
