"""The k-diffusion sampler function our KSampler entries and SAMPLER node hand to ComfyUI."""

import math

import pytest
import torch

from flowanime.bench.gmm import GaussianMixture, single_gaussian_flow
from flowanime.samplers import tableaux
from flowanime.samplers.k_sampler import SamplerConfig, make_sampler_function
from flowanime.samplers.ode import travelled


def gaussian_model():
    mean = torch.full((4, 8, 8), 0.3)
    gmm = GaussianMixture.single(mean, 0.1)
    calls = []

    def model(x, sigma, **kwargs):
        assert sigma.shape == (x.shape[0],)  # ComfyUI passes one sigma per image
        calls.append(float(sigma[0]))
        return gmm.denoise(x, sigma)

    return model, mean, calls


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(method="rk45"), "method"), (dict(log10_rtol=1.0), "log10_rtol"), (dict(log10_atol=float("nan")), "log10_atol"),
     (dict(max_model_calls=2), "max_model_calls"), (dict(method="dopri5", max_model_calls=6), "max_model_calls"),
     (dict(sigma_min=0.0), "sigma_min"), (dict(ode_form="eps"), "ode_form")],
)
def test_bad_settings_name_the_setting(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        SamplerConfig(**kwargs)


def test_schedule_to_zero_returns_the_denoised_prediction_at_sigma_min():
    model, mean, calls = gaussian_model()
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = make_sampler_function(SamplerConfig("dopri5", -5, -6))(model, noise, torch.tensor([1.0, 0.5, 0.0]), disable=True)
    exact = torch.stack([single_gaussian_flow(mean, 0.1, n, 0.0) for n in noise])
    assert torch.allclose(out, exact, atol=1e-4)
    assert min(calls) == pytest.approx(1e-3)  # stopped at sigma_min, never evaluated at 0


def test_schedule_ending_above_zero_returns_the_latent_there():
    model, mean, calls = gaussian_model()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = make_sampler_function(SamplerConfig("bosh3", -5, -6))(model, noise, torch.tensor([1.0, 0.6, 0.4]), disable=True)
    assert torch.allclose(out, single_gaussian_flow(mean, 0.1, noise[0], 0.4).unsqueeze(0), atol=1e-4)


def test_progress_maps_sigma_travelled_onto_comfyuis_step_count():
    model, _, _ = gaussian_model()
    steps = []
    sigmas = torch.linspace(1, 0, 21)
    make_sampler_function(SamplerConfig("dopri5"))(model, torch.randn(1, 4, 8, 8), sigmas,
                                                   callback=lambda d: steps.append(d["i"]), disable=True)
    assert steps == sorted(steps) and steps[-1] == 19 and all(0 <= i <= 19 for i in steps)


@pytest.mark.parametrize("method", ["flow_multistep", "exp_multistep", "euler", "heun"])
def test_fixed_methods_report_each_step_in_turn(method):
    """A fixed method knows its step: the callback's index counts the steps, on a karras-like schedule
    (long steps in sigma first) and on a rising one (inversion), never ahead and never below 0."""
    model, _, _ = gaussian_model()
    for sigmas in (torch.tensor([1.0, 0.5, 0.2, 0.08, 0.03, 0.01, 0.0]), torch.linspace(0.2, 0.9, 7)):
        steps = []
        make_sampler_function(SamplerConfig(method))(model, torch.randn(1, 4, 8, 8), sigmas,
                                                     callback=lambda d: steps.append(d["i"]), disable=True)
        assert steps == list(range(len(sigmas) - 1)), (method, sigmas.tolist(), steps)


def test_adaptive_progress_is_log_sigma_travelled():
    assert travelled(14.6, 0.03, 14.6) == 0.0 and travelled(14.6, 0.03, 0.03) == pytest.approx(1.0)
    assert travelled(14.6, 0.03, math.sqrt(14.6 * 0.03)) == pytest.approx(0.5)  # eps: half way in log sigma
    assert travelled(1.0, 0.0, 0.25) == pytest.approx(0.75)  # an end at 0: in sigma
    assert travelled(0.2, 0.9, 0.55) == pytest.approx(math.log(0.55 / 0.2) / math.log(0.9 / 0.2))  # rising
    assert travelled(1.0, 0.001, 2.0) == 0.0 and travelled(1.0, 0.001, 1e-4) == 1.0  # clipped


@pytest.mark.parametrize("method", sorted(tableaux.ADAPTIVE) + ["adams_pc", "flow_adams_pc"])
def test_a_full_adaptive_solve_reports_its_last_step_once(method):
    """Only a solve whose budget ran out gets a closing report (its DDIM finish reports nothing). A full
    solve's last step, at sigma_min, is reported by the solver, even where rounding leaves its progress a
    hair under 1 (adams_pc from 0.96: 0.9999999999999998): no second report of it at sigma 0 (a review
    helper found one in 8 of 20 img2img-like starts)."""
    model, _, _ = gaussian_model()
    for start in (0.96, 0.6, 0.44, 0.2):
        seen = []
        sample = make_sampler_function(SamplerConfig(method, -2.5, -3.5, sigma_min=1e-3))
        sample(model, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)),
               torch.tensor([start, start / 2, 0.0]), disable=True, callback=lambda d: seen.append(d["sigma"]))
        assert seen and seen[-1] == pytest.approx(1e-3) and 0.0 not in seen, (start, seen[-3:])


def test_empty_or_flat_schedule_returns_the_input():
    model, _, calls = gaussian_model()
    x = torch.randn(1, 4, 8, 8)
    fn = make_sampler_function(SamplerConfig())
    assert fn(model, x, torch.tensor([1.0]), disable=True) is x
    assert fn(model, x, torch.tensor([0.5, 0.5]), disable=True) is x and not calls


# --- conditioning that starts or stops at a sigma ---------------------------------------------------


def test_segments_split_at_breakpoints_inside_the_range_either_way():
    from flowanime.samplers.k_sampler import BREAKPOINT_GAP as g
    from flowanime.samplers.k_sampler import segments_between

    down = segments_between(1.0, 1e-3, [0.5, 0.9995, 2.0, 1.0005e-3, float("nan"), 0.5, 0.1])
    assert down == [(1.0, 0.5 * (1 + g)), (0.5 * (1 - g), 0.1 * (1 + g)), (0.1 * (1 - g), 1e-3)]
    assert segments_between(0.1, 1.0, [0.5]) == [(0.1, 0.5 * (1 - g)), (0.5 * (1 + g), 1.0)]
    assert segments_between(1.0, 1e-3, []) == [(1.0, 1e-3)]


def conditioning_switch_model(switch_sigma=0.3):
    """A denoiser whose prediction is one constant above switch_sigma and another from there down (a
    prompt that changes at that sigma, for the whole image). In log sigma, DDIM is exact for a constant
    prediction: x(s_end) = s_end (x0 / s0 + A (1/s* - 1/s0) + B (1/s_end - 1/s*))."""
    gen = torch.Generator().manual_seed(5)
    before, after = torch.randn((4, 8, 8), generator=gen), torch.randn((4, 8, 8), generator=gen)
    calls = []

    def model(x, sigma, **kwargs):
        calls.append(float(sigma[0]))
        return (before if float(sigma[0]) > switch_sigma else after).expand_as(x).clone()

    def exact(noise, s_end):
        return s_end * (noise + before * (1 / switch_sigma - 1) + after * (1 / s_end - 1 / switch_sigma))

    return model, exact, calls


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adams_pc", "flow_adams_pc"])
def test_a_conditioning_switch_is_a_segment_boundary_not_a_step_collapse(method):
    """Told the sigma where the conditioning changes, the solve ends just above it and starts afresh
    just below: the latent (a pass ending at sigma 0.01) lands where the closed form puts it. Told
    nothing, the step control shrinks its steps onto the jump (bosh3 46 calls against 20, adams_pc 31
    against 10), or steps over it with an error 10,000 times larger (dopri5: 31 calls, 0.023)."""
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    results = {}
    for told in (True, False):
        model, exact, calls = conditioning_switch_model()
        sample = make_sampler_function(SamplerConfig(method, -2.5, -3.5, sigma_min=1e-3),
                                       breakpoints_of=(lambda m, start, end: [0.3]) if told else None)
        out = sample(model, noise.clone(), torch.tensor([1.0, 0.01]), disable=True)
        results[told] = (len(calls), float((out - exact(noise, 0.01)).abs().max()))
    (told_calls, told_error), (blind_calls, blind_error) = results[True], results[False]
    assert told_error < 1e-4, told_error
    assert told_calls < blind_calls or blind_error > 1000 * told_error, results


@pytest.mark.parametrize("method", ["exp_multistep", "flow_multistep"])
def test_a_fixed_schedule_ending_a_step_at_a_switch_restarts_its_history(method):
    """A schedule with a sigma just below the switch (as the Calibrated Schedule places one): told, the
    step onto it is the predictor alone and the history starts again from its call, which is exact for
    a prediction constant on each side (the same calls); told nothing, the corrector and the next
    polynomials mix both sides. A switch inside a step is left alone: the same result either way."""
    from flowanime.samplers.k_sampler import BREAKPOINT_GAP

    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    aligned = torch.tensor([1.0, 0.8, 0.6, 0.45, 0.3 * (1 - BREAKPOINT_GAP), 0.15, 0.08, 0.04, 0.02], dtype=torch.float64)
    inside = torch.tensor([1.0, 0.8, 0.6, 0.45, 0.25, 0.15, 0.08, 0.04, 0.02])
    for schedule, exact_when_told in ((aligned, True), (inside, False)):
        errors, counts = {}, {}
        for told in (True, False):
            model, exact, calls = conditioning_switch_model()
            sample = make_sampler_function(SamplerConfig(method, -2.5, -3.5),
                                           breakpoints_of=(lambda m, start, end: [0.3]) if told else None)
            out = sample(model, noise.clone().double(), schedule, disable=True)
            errors[told], counts[told] = float((out - exact(noise.double(), 0.02)).abs().max()), len(calls)
        assert counts[True] == counts[False]
        if exact_when_told:
            assert errors[True] < 1e-4 and errors[False] > 100 * errors[True], errors
        else:
            assert errors[True] == errors[False], errors


@pytest.mark.parametrize("method", ["dopri5", "heun_euler", "adams_pc", "flow_adams_pc"])
@pytest.mark.parametrize("budget", [4, 7, 13])
def test_segments_share_one_call_budget_warn_once_and_report_progress_over_the_whole_range(method, budget, caplog):
    model, _, calls = conditioning_switch_model()
    seen = []
    budget = max(budget, SamplerConfig(method).calls_for_one_step)  # dopri5 needs 7 for one step
    sample = make_sampler_function(SamplerConfig(method, -2.5, -3.5, max_model_calls=budget, sigma_min=1e-3),
                                   breakpoints_of=lambda m, start, end: [0.8, 0.6, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02])
    with caplog.at_level("WARNING", logger="FlowAnime"):
        out = sample(model, torch.randn(1, 4, 8, 8), torch.tensor([1.0, 0.0]), disable=True,
                     callback=lambda d: seen.append(d["sigma"]))
    warnings = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert len(calls) <= budget and torch.isfinite(out).all()
    assert len(warnings) == 1 and f"budget of {budget} model calls" in warnings[0]
    assert seen == sorted(seen, reverse=True)  # the progress never goes back at a segment boundary


@pytest.mark.parametrize("method", sorted(tableaux.ADAPTIVE) + ["adams_pc", "flow_adams_pc"])
@pytest.mark.parametrize("breakpoints", [(), (0.4,)])
def test_a_spent_budget_still_returns_the_image_not_the_latent_at_sigma_min(method, breakpoints, caplog):
    """Data that is one image C: the exact denoiser is C at every sigma, and the image is C. With the
    budget spent the solve finishes with a DDIM step, which holds the prediction constant: the image
    it returns is that prediction, not the latent at sigma_min (C plus sigma_min's share of noise; a
    review helper found 2.9e-2 RMS of noise left on the SD1.5 stand-in, one call short), and the
    progress bar ends full."""
    image = torch.full((2, 4, 8, 8), 0.4)
    calls = []

    def model(x, sigma, **kwargs):
        calls.append(float(sigma[0]))
        return image.clone()

    budget = max(4, SamplerConfig(method).calls_for_one_step)
    sample = make_sampler_function(SamplerConfig(method, -6, -7, max_model_calls=budget, sigma_min=0.2),
                                   breakpoints_of=lambda m, start, end: list(breakpoints))
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    steps = []
    with caplog.at_level("WARNING", logger="FlowAnime"):
        out = sample(model, noise, torch.tensor([1.0, 0.5, 0.2, 0.0]), disable=True, callback=lambda d: steps.append(d["i"]))
    assert any("ran out" in r.getMessage() for r in caplog.records), "the budget was not spent"
    assert steps[-1] == 2  # ComfyUI's progress bar (made for the 3 steps) ends full
    assert budget - 1 <= len(calls) <= budget  # none over, at most one left (too few for a step)
    assert torch.allclose(out, image, atol=1e-6), float((out - image).abs().max())


@pytest.mark.parametrize("method", sorted(set(tableaux.ADAPTIVE) | set(tableaux.FIXED)
                                          | {"adams_pc", "flow_adams_pc", "exp_multistep", "flow_multistep",
                                             "exp_singlestep", "exp_multistep_staged_end"}))
def test_the_last_preview_of_a_schedule_to_zero_is_the_image_returned(method):
    """At sigma 0 the latent is its own denoised prediction, so the last callback's `denoised` (the
    preview, and SamplerCustomAdvanced's denoised_output) is the image the sampler returns;
    exp_singlestep's was its last stage's prediction, a non-FSAL pair's was reported before its call
    at the end."""
    model, _, _ = gaussian_model()
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    seen = []
    out = make_sampler_function(SamplerConfig(method))(model, noise, torch.linspace(1, 0, 7),
                                                       callback=seen.append, disable=True)
    assert seen[-1]["i"] == 5
    assert torch.equal(seen[-1]["denoised"], out)
