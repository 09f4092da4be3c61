"""Unit tests of the solver cores against analytic solutions (no ComfyUI needed): the Runge-Kutta
methods, and the contract every adaptive solver keeps (tolerance, batch, dtype, hooks, faults), run
for dopri5, adams_pc and flow_adams_pc (whose own tests are in test_multistep.py)."""

import math

import pytest
import torch
from solver_problems import single_gaussian

from flowanime.bench.gmm import GaussianMixture, reference_solution, rms_error
from flowanime.samplers import tableaux
from flowanime.samplers.multistep import solve_adams_pc, solve_flow_adams_pc
from flowanime.samplers.ode import (
    FIRST_STEP_SCALE,
    FORMS,
    AdaptiveSettings,
    ModelOutputNotFinite,
    rk_step,
    solve_adaptive,
    solve_fixed,
)


def integrate_fixed(tableau, steps, weights="b"):
    """y' = y cos t, y(0) = 1 on [0, 2]: exact y = exp(sin t). Returns the error at t = 2."""
    c, a, b, e = tableau.floats()
    if weights == "low":  # propagate the embedded lower-order solution instead
        b = [hi - err for hi, err in zip(b, e)]
    coeffs = (c, a, b, None)
    f = lambda t, y: y * math.cos(t)  # noqa: E731
    y, h = torch.ones(1, 1, dtype=torch.float64), 2.0 / steps
    for i in range(steps):
        y, _, _ = rk_step(f, i * h, y, h, coeffs, f(i * h, y))
    return abs(float(y) - math.exp(math.sin(2.0)))


@pytest.mark.parametrize("name", sorted(tableaux.ALL))
def test_each_method_converges_at_its_order(name):
    tab = tableaux.ALL[name]
    e1, e2 = integrate_fixed(tab, 40), integrate_fixed(tab, 80)
    assert math.log2(e1 / e2) == pytest.approx(tab.order, abs=0.25)


@pytest.mark.parametrize("name", sorted(tableaux.ADAPTIVE))
def test_embedded_solution_converges_at_the_lower_order(name):
    tab = tableaux.ADAPTIVE[name]
    # Fehlberg's first-order weights are 255/256 midpoint + 1/256 Euler: the first-order term only
    # dominates once h << 1/256, so it needs far smaller steps to show its asymptotic order.
    n = 40000 if name == "fehlberg2" else 40
    e1, e2 = integrate_fixed(tab, n, "low"), integrate_fixed(tab, 2 * n, "low")
    assert math.log2(e1 / e2) == pytest.approx(tab.error_order, abs=0.3)


def test_fsal_flags():
    assert tableaux.DOPRI5.fsal and tableaux.BOSH3.fsal
    assert not tableaux.HEUN_EULER.fsal and not tableaux.FEHLBERG2.fsal and not tableaux.RK4.fsal


# --- the flow ODE with a known solution ------------------------------------------------------------


# Every adaptive solver as f(denoiser, x, sigma_start, sigma_end, settings=None, **hooks).
ADAPTIVE_SOLVERS = {
    "dopri5": lambda d, x, s0, s1, settings=None, **kw: solve_adaptive(d, x, s0, s1, tableaux.DOPRI5,
                                                                        settings or AdaptiveSettings(), **kw),
    "adams_pc": solve_adams_pc,
    "flow_adams_pc": solve_flow_adams_pc,
}
solvers = pytest.mark.parametrize("solver", sorted(ADAPTIVE_SOLVERS))


@pytest.mark.parametrize("form", ["data", "velocity"])
@pytest.mark.parametrize("method", sorted(tableaux.ADAPTIVE))
def test_adaptive_solve_meets_its_tolerance_on_the_exact_gaussian_flow(method, form):
    gmm, noise, exact = single_gaussian()
    rtol, atol = 1e-4, 1e-5
    settings = AdaptiveSettings(rtol=rtol, atol=atol, max_model_calls=20000)
    _, denoised, stats = solve_adaptive(gmm.denoise, noise.double(), 1.0, 1e-4, tableaux.ADAPTIVE[method], settings, form)
    tolerance = atol + rtol * float(exact.abs().max())
    assert rms_error(denoised, exact) < 10 * tolerance, stats.summary()
    assert not stats.budget_exhausted


@pytest.mark.parametrize("form", ["data", "velocity"])
def test_tighter_tolerance_gives_a_smaller_error(form):
    gmm, noise, exact = single_gaussian()
    errors = []
    for log_tol in (-2, -4, -6):
        settings = AdaptiveSettings(rtol=10**log_tol, atol=10 ** (log_tol - 1), max_model_calls=20000)
        _, d, _ = solve_adaptive(gmm.denoise, noise.double(), 1.0, 1e-4, tableaux.DOPRI5, settings, form)
        errors.append(rms_error(d, exact))
    assert errors[0] > errors[1] > errors[2]


# --- the contract of every adaptive solver -------------------------------------------------------------


@solvers
def test_meets_its_tolerance_and_tighter_tolerance_gives_a_smaller_error(solver):
    gmm, noise, exact = single_gaussian()
    errors = []
    for log_tol in (-2, -4, -6):
        rtol, atol = 10**log_tol, 10 ** (log_tol - 1)
        _, d, stats = ADAPTIVE_SOLVERS[solver](gmm.denoise, noise.double(), 1.0, 1e-4,
                                               AdaptiveSettings(rtol=rtol, atol=atol, max_model_calls=20000))
        errors.append(rms_error(d, exact))
        assert errors[-1] < 10 * (atol + rtol * float(exact.abs().max())) and not stats.budget_exhausted
    assert errors[0] > errors[1] > errors[2]


@solvers
def test_mixture_flow_is_solved_to_the_reference_in_a_batch_and_alone(solver):
    solve = ADAPTIVE_SOLVERS[solver]
    gmm = GaussianMixture.latent_like(shape=(4, 16, 16), components=8, seed=3, dtype=torch.float64)
    noise = gmm.sample_noise(3, seed=5, dtype=torch.float64)
    reference = reference_solution(gmm, noise)
    settings = AdaptiveSettings(rtol=1e-5, atol=1e-6, max_model_calls=5000)
    _, batched, stats = solve(gmm.denoise, noise, 1.0, 1e-4, settings)
    assert rms_error(batched, reference) < 1e-3, stats.summary()
    for i in range(3):
        _, alone, _ = solve(gmm.denoise, noise[i : i + 1], 1.0, 1e-4, settings)
        assert rms_error(alone, reference[i : i + 1]) < 1e-3


@solvers
def test_a_batch_is_one_solve_in_the_latent_dtype_every_call_sees_the_whole_batch(solver):
    gmm, noise, _ = single_gaussian(batch=5)
    seen = []

    def denoiser(x, sigma):
        seen.append((x.shape[0], x.dtype, x.device))
        return gmm.denoise(x, sigma)

    x, d, stats = ADAPTIVE_SOLVERS[solver](denoiser, noise.float(), 1.0, 1e-3)
    assert len(seen) == stats.model_calls and set(seen) == {(5, torch.float32, noise.device)}
    assert x.dtype == d.dtype == torch.float32


def test_fsal_method_finishes_with_the_denoised_prediction_at_no_extra_call():
    gmm, noise, _ = single_gaussian()
    calls = []
    x, denoised, stats = solve_adaptive(lambda x, s: calls.append(s) or gmm.denoise(x, s), noise, 1.0, 1e-3, tableaux.DOPRI5)
    # the initial call + 6 per accepted or rejected step (the first step costs no probe call); the
    # last call is at sigma_end
    assert stats.model_calls == 1 + 6 * (stats.accepted + stats.rejected)
    assert calls[-1] == pytest.approx(1e-3)
    assert torch.equal(denoised, gmm.denoise(x, 1e-3))


@pytest.mark.parametrize("form", ["data", "velocity"])
def test_first_step_is_chosen_from_the_first_model_call_in_log_sigma(form):
    """No probe call: the second model call (dopri5's stage at c=1/5) sits at the log-sigma step
    FIRST_STEP_SCALE * rms(x) / rms(x - D), whichever ODE form is integrated."""
    gmm, noise, _ = single_gaussian()
    sigmas = []
    solve_adaptive(lambda x, s: sigmas.append(s) or gmm.denoise(x, s), noise, 1.0, 1e-3, tableaux.DOPRI5,
                   AdaptiveSettings(rtol=0.1, atol=0.01), form=form)
    x, d = noise, gmm.denoise(noise, 1.0)
    rms = lambda v: float(v.square().flatten(1).mean(1).sqrt().max())  # noqa: E731
    log_step = FIRST_STEP_SCALE * rms(x) / rms(x - d)
    t0, t1 = FORMS[form].time(1.0), FORMS[form].time(math.exp(-log_step))
    assert FORMS[form].sigma(t0 + 0.2 * (t1 - t0)) == pytest.approx(sigmas[1], rel=1e-9)


def test_tighter_tolerance_starts_with_a_smaller_step():
    gmm, noise, _ = single_gaussian()
    second = {}
    for rtol in (1e-2, 1e-4):
        sigmas = []
        solve_adaptive(lambda x, s: sigmas.append(s) or gmm.denoise(x, s), noise, 1.0, 1e-3, tableaux.BOSH3,
                       AdaptiveSettings(rtol=rtol, atol=rtol / 10))
        second[rtol] = sigmas[1]
    assert second[1e-4] > second[1e-2]  # closer to sigma=1


@solvers
def test_hook_runs_on_every_model_call_and_can_interrupt(solver):
    gmm, noise, _ = single_gaussian()
    count = [0]

    def hook():
        count[0] += 1
        if count[0] == 5:
            raise KeyboardInterrupt("interrupted")

    with pytest.raises(KeyboardInterrupt):
        ADAPTIVE_SOLVERS[solver](gmm.denoise, noise, 1.0, 1e-3, on_model_call=hook)
    assert count[0] == 5


# --- faults ---------------------------------------------------------------------------------------------


def broken_below_half(gmm):
    def broken(x, sigma):
        out = gmm.denoise(x, sigma)
        return out * float("nan") if sigma < 0.5 else out

    return broken


@solvers
def test_nan_from_the_model_gets_a_clear_error(solver):
    gmm, noise, _ = single_gaussian()
    with pytest.raises(ModelOutputNotFinite, match="ModelComputeDtype"):
        ADAPTIVE_SOLVERS[solver](broken_below_half(gmm), noise, 1.0, 1e-3)


def test_nan_from_the_model_gets_a_clear_error_with_a_fixed_step_method():
    gmm, noise, _ = single_gaussian()
    with pytest.raises(ModelOutputNotFinite, match="ModelComputeDtype"):
        solve_fixed(broken_below_half(gmm), noise, [1.0, 0.75, 0.5, 0.25, 0.0], tableaux.HEUN)


@solvers
def test_spent_budget_completes_the_image_with_a_warning(solver):
    gmm, noise, exact = single_gaussian()
    messages = []
    settings = AdaptiveSettings(rtol=1e-7, atol=1e-8, max_model_calls=40)
    x, denoised, stats = ADAPTIVE_SOLVERS[solver](gmm.denoise, noise, 1.0, 1e-3, settings, log=messages.append)
    assert stats.budget_exhausted and stats.model_calls <= 40
    assert torch.isfinite(x).all() and torch.isfinite(denoised).all()
    assert rms_error(x, exact) < 0.5  # a soft image, not noise
    assert messages and "max_model_calls" in messages[0]


@solvers
def test_a_model_that_blows_up_stops_with_a_clear_error(solver):
    """Blowing up at sigma = 0.5 used to end in a collapsed step; a denoised prediction beyond any
    latent's range is now stopped at the call that returns it (issue 12)."""
    def singular(x, sigma):
        return torch.full_like(x, 1.0 / abs(sigma - 0.5) ** 3)

    with pytest.raises(ModelOutputNotFinite, match="out of range"):
        ADAPTIVE_SOLVERS[solver](singular, torch.zeros(1, 4), 1.0, 1e-3, AdaptiveSettings(max_model_calls=10**6))


def test_a_rejected_last_step_is_retried_shorter_not_stretched_back():
    """Regression: the sliver-stretching rule turned a rejected final step, shrunk by less than 1/1.25,
    back into the same step, which failed again until the budget ran out (this case took all 5000
    calls in the benchmark; it needs about 30)."""
    gmm = GaussianMixture.latent_like(shape=(16, 32, 32), components=16, seed=0)
    noise = gmm.sample_noise(4, seed=1)
    ends = []
    _, _, stats = solve_adaptive(lambda x, s: ends.append(s) or gmm.denoise(x, s), noise, 1.0, 1e-3, tableaux.DOPRI5,
                                 AdaptiveSettings(rtol=1e-2, atol=1e-3, max_model_calls=500), form="velocity")
    assert not stats.budget_exhausted and stats.rejected >= 1 and stats.model_calls < 60
    attempt_ends = ends[6::6]  # dopri5: each attempt's last stage sits at its end point
    assert all(a != b for a, b in zip(attempt_ends, attempt_ends[1:]))


# --- fixed-step methods -----------------------------------------------------------------------------------


def test_euler_in_the_data_form_is_ddim_and_in_the_velocity_form_is_comfyuis_euler():
    gmm, noise, _ = single_gaussian()
    sigmas = [1.0, 0.6, 0.3, 0.1]
    x_ddim, x_euler = noise.clone(), noise.clone()
    for s, s_next in zip(sigmas, sigmas[1:]):
        d = gmm.denoise(x_ddim, s)
        x_ddim = (s_next / s) * x_ddim + (1 - s_next / s) * d
        d = gmm.denoise(x_euler, s)
        x_euler = x_euler + (s_next - s) * (x_euler - d) / s
    assert torch.allclose(solve_fixed(gmm.denoise, noise, sigmas, tableaux.EULER, "data")[0], x_ddim, atol=1e-6)
    assert torch.allclose(solve_fixed(gmm.denoise, noise, sigmas, tableaux.EULER, "velocity")[0], x_euler, atol=1e-6)


@pytest.mark.parametrize("name", sorted(tableaux.FIXED))
def test_fixed_methods_follow_the_schedule_and_end_on_the_denoised_prediction(name):
    gmm, noise, exact = single_gaussian()
    tab = tableaux.FIXED[name]
    sigmas = [1.0 - i / 20 for i in range(20)] + [0.0]
    steps = []
    x, stats = solve_fixed(gmm.denoise, noise, sigmas, tab, on_step=steps.append)
    assert stats.model_calls == tab.stages * 19 + 1
    assert [s.sigma for s in steps] == pytest.approx(sigmas[1:])
    assert rms_error(x, exact) < 0.05


# --- a model whose output switches form: inpainting with a mask that opens with sigma ---------------


def differential_inpainting(mean=0.3, std=0.5, sigma_end=1e-3, seed=0, opening=True, uniform=None):
    """What ComfyUI's KSamplerX0Inpaint makes of an exact Gaussian flow denoiser D under Differential
    Diffusion (comfy_extras/nodes_differential_diffusion.py): each pixel's mask value m opens at the sigma
    where the threshold (sigma - sigma_end) / (1 - sigma_end) falls to m (b = 1 from there on). Until
    then the model sees the given latent L noised to that sigma and its prediction there is L:
    D'(x) = b D(b x + (1 - b) s) + (1 - b) L with s = sigma noise + (1 - sigma) L.
    opening False: the same mask as a fixed feathered mask b = m (plain inpainting: no switch).
    uniform: a mask at that one value instead.
    Returns (denoiser, switching, noise), batch 2, a mask of 64 levels."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((2, 4, 8, 8), generator=gen, dtype=torch.float64)
    given = torch.full_like(noise, -0.4)
    mask = torch.linspace(0.0, 1.0, 64, dtype=torch.float64).reshape(1, 1, 8, 8).expand_as(noise)
    if uniform is not None:  # a mask at one opacity: every value opens at the same sigma
        mask = torch.full_like(noise, uniform)

    def opened(sigma):
        if not opening:
            return mask
        return (mask >= (sigma - sigma_end) / (1 - sigma_end)).to(noise.dtype)

    def denoise(x, sigma):
        b = opened(sigma)
        x_in = b * x + (1 - b) * (sigma * noise + (1 - sigma) * given)
        exact = mean + (1 - sigma) * std**2 / ((1 - sigma) ** 2 * std**2 + sigma**2) * (x_in - (1 - sigma) * mean)
        return b * exact + (1 - b) * given

    return denoise, (lambda a, b: opened(a) != opened(b)), noise


def euler_reference(denoise, noise, steps=20000, sigma_end=1e-3):
    x = noise.clone()
    sigmas = torch.linspace(1.0, sigma_end, steps + 1, dtype=torch.float64).tolist()
    for s, s_next in zip(sigmas, sigmas[1:]):
        x = x + (s_next - s) * (x - denoise(x, s)) / s
    return denoise(x, sigmas[-1])


@pytest.mark.parametrize("solver", sorted({**ADAPTIVE_SOLVERS, "bosh3": None}))
def test_a_mask_opening_with_sigma_costs_a_bounded_number_of_calls(solver):
    """Each pixel's switch is a jump in the model's output that no shorter step removes. Told nothing,
    the adaptive steps shrink on every switch (115 to 236 calls here, on 64 mask levels); told where
    the output switches, the error control leaves those values out, so each switch is timed to the
    solver's steps and split there (located to a sixteenth of the step by reading the mask, no model
    call), and no step covers more than a quarter of the values switching: at most about twice the calls
    of the same mask held fixed (28 to 61 here), and closer to the converged image than Euler at 20
    steps (0.007 to 0.014 against 0.038; README: "Inpainting")."""
    solve = ADAPTIVE_SOLVERS.get(solver) or (lambda d, x, s0, s1, settings=None, **kw: solve_adaptive(
        d, x, s0, s1, tableaux.BOSH3, settings or AdaptiveSettings(), **kw))
    denoise, switching, noise = differential_inpainting()
    settings = AdaptiveSettings(rtol=10**-2.5, atol=10**-3.5, max_model_calls=300)
    reference = euler_reference(denoise, noise)
    _, told, told_stats = solve(denoise, noise.clone(), 1.0, 1e-3, settings, switching=switching)
    _, _, blind_stats = solve(denoise, noise.clone(), 1.0, 1e-3, settings)
    _, _, fixed_mask_stats = solve(differential_inpainting(opening=False)[0], noise.clone(), 1.0, 1e-3, settings)
    assert not told_stats.budget_exhausted and told_stats.model_calls <= 2.2 * fixed_mask_stats.model_calls
    assert blind_stats.model_calls > 2 * told_stats.model_calls
    assert rms_error(told, reference) < rms_error(euler_reference(denoise, noise, steps=20), reference)


@pytest.mark.parametrize("solver", sorted(ADAPTIVE_SOLVERS))
def test_a_switch_inside_a_step_is_split_where_it_happens(solver):
    """A denoiser that is one constant before a per-value sigma and another after it: in log sigma x
    follows DDIM exactly, x(s_end) = s_end (x0 / s0 + A (1/s* - 1/s0) + B (1/s_end - 1/s*)). A step
    across s* ends within what locating s* to a sixteenth of the step leaves (and no step covers more
    than a quarter of the switches: dopri5 takes 10 steps here)."""
    gen = torch.Generator().manual_seed(3)
    shape = (2, 4, 8, 8)
    before, after = torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(shape, generator=gen,
                                                                                         dtype=torch.float64)
    switch_at = torch.exp(torch.empty(shape, dtype=torch.float64).uniform_(math.log(0.02), math.log(0.8), generator=gen))
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)

    def denoise(x, sigma):
        return torch.where(switch_at < sigma, before, after)

    def switching(sigma_a, sigma_b):
        return (switch_at < sigma_a) != (switch_at < sigma_b)

    s_end = 1e-3
    exact = s_end * (noise + before * (1 / switch_at - 1) + after * (1 / s_end - 1 / switch_at))
    settings = AdaptiveSettings(rtol=10**-2.5, atol=10**-3.5, max_model_calls=300)
    x_end, _, stats = ADAPTIVE_SOLVERS[solver](denoise, noise.clone(), 1.0, s_end, settings, switching=switching)
    jump = float((after - before).abs().max())
    assert not stats.budget_exhausted and stats.model_calls < 70
    assert float((x_end - exact).abs().max()) < 0.05 * jump, float((x_end - exact).abs().max())


@pytest.mark.parametrize("solver", ["dopri5", "dopri5 velocity", "bosh3", "adams_pc", "flow_adams_pc"])
def test_a_mask_opening_everywhere_at_once_is_still_checked(solver):
    """A mask at one opacity opens every value at one sigma: with nothing left to check, the error counts
    them all (the step control treats the switch as one jump) rather than accepting any step."""
    tableau = {"bosh3": tableaux.BOSH3, "dopri5 velocity": tableaux.DOPRI5}.get(solver)
    form = "velocity" if "velocity" in solver else "data"
    solve = ADAPTIVE_SOLVERS.get(solver) or (lambda d, x, s0, s1, settings=None, **kw: solve_adaptive(
        d, x, s0, s1, tableau, settings or AdaptiveSettings(), form, **kw))
    denoise, switching, noise = differential_inpainting(uniform=0.5)
    reference = euler_reference(denoise, noise)
    settings = AdaptiveSettings(rtol=10**-2.5, atol=10**-3.5, max_model_calls=300)
    _, out, stats = solve(denoise, noise.clone(), 1.0, 1e-3, settings, switching=switching)
    assert not stats.budget_exhausted
    assert rms_error(out, reference) < rms_error(euler_reference(denoise, noise, steps=20), reference)
