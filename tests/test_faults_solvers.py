"""Fault suite, solver cores: faulty models, bad schedules, bad latents, extreme settings (issue 12).

Every case ends in one of two ways: a finite result that is right (checked against the exact flow of
one Gaussian, bench/gmm.py), or an error whose message names the input to change. A non-finite
result is a failure, and so is a hang: every case is bounded by the call budget it sets.
"""

import math

import pytest
import torch

from flowanime.bench.gmm import GaussianMixture, single_gaussian_flow
from flowanime.samplers import tableaux
from flowanime.samplers.inputs import SamplerInputError
from flowanime.samplers.k_sampler import METHODS, SamplerConfig, make_sampler_function
from flowanime.samplers.ode import ModelOutputNotFinite, SolverError

pytestmark = pytest.mark.faults

ADAPTIVE = sorted(tableaux.ADAPTIVE) + ["adams_pc", "flow_adams_pc"]
FIXED = sorted(tableaux.FIXED) + ["exp_multistep", "flow_multistep", "exp_singlestep", "exp_multistep_staged_end"]
MEAN, STD = torch.full((4, 8, 8), 0.3), 0.1


class Model:
    """The exact denoiser of one Gaussian, as ComfyUI's KSAMPLER hands it (one sigma per image), with a
    fault injected: `fault(call_index, denoised, sigma) -> denoised` rewrites chosen calls."""

    def __init__(self, fault=None):
        self.gmm = GaussianMixture.single(MEAN, STD)
        self.fault = fault
        self.sigmas = []

    def __call__(self, x, sigma, **kwargs):
        assert sigma.shape == (x.shape[0],)
        self.sigmas.append(float(sigma[0]))
        out = self.gmm.denoise(x.double(), sigma.double()).to(x.dtype)
        return out if self.fault is None else self.fault(len(self.sigmas) - 1, out, float(sigma[0]))


def noise(batch=2, seed=0, dtype=torch.float32):
    return torch.randn((batch, 4, 8, 8), generator=torch.Generator().manual_seed(seed)).to(dtype)


def sample(method, model, x, sigmas, log=None, **config):
    config = {"log10_rtol": -3.0, "log10_atol": -4.0, "max_model_calls": 400, **config}
    fn = make_sampler_function(SamplerConfig(method, **config), logger=log or _Log())
    return fn(model, x, torch.as_tensor(sigmas, dtype=torch.float64), disable=True)


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args if args else msg)

    warning = info


def exact(x, sigma_from, sigma_to):
    """The exact flow of the Gaussian from x at sigma_from to sigma_to (through the noise at sigma 1)."""
    scale = math.sqrt((1 - sigma_from) ** 2 * STD**2 + sigma_from**2)
    n = (x - (1 - sigma_from) * MEAN) / scale
    return torch.stack([single_gaussian_flow(MEAN, STD, image, sigma_to) for image in n])


def assert_finite(out):
    assert torch.isfinite(out).all(), "silent non-finite output"


# --- faulty models ----------------------------------------------------------------------------------

def nan_at(call):
    return lambda i, out, sigma: out * float("nan") if i == call else out


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_first_call_stops_at_that_call(method, value):
    """Item 8: dopri5 used to spend its whole first step (6 calls) before noticing."""
    model = Model(lambda i, out, s: out * value if i == 0 else out)
    with pytest.raises(ModelOutputNotFinite, match="ModelComputeDtype") as err:
        sample(method, model, noise(), [1.0, 0.5, 0.0])
    assert len(model.sigmas) == 1, f"{len(model.sigmas)} calls before the NaN was noticed"
    assert "images 0, 1" in str(err.value) or "image 0" in str(err.value)


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
def test_a_nan_on_the_final_call_is_an_error_not_a_nan_image(method):
    """Item 2: the non-FSAL methods' final denoise call was returned unchecked."""
    calls = len_of_clean_solve(method)
    model = Model(nan_at(calls - 1))
    with pytest.raises(ModelOutputNotFinite, match="returned NaN or inf"):
        out = sample(method, model, noise(), [1.0, 0.5, 0.0])
        assert_finite(out)


def len_of_clean_solve(method):
    model = Model()
    sample(method, model, noise(), [1.0, 0.5, 0.0])
    return len(model.sigmas)


@pytest.mark.parametrize("method", ADAPTIVE + ["euler"])
def test_a_nan_in_one_image_names_that_image(method):
    def fault(i, out, sigma):
        if i == 1:
            out = out.clone()
            out[3] = float("nan")
        return out

    with pytest.raises(ModelOutputNotFinite, match=r"image 3\b"):
        sample(method, Model(fault), noise(batch=5), [1.0, 0.5, 0.0])


@pytest.mark.parametrize("method", ADAPTIVE + ["euler"])
def test_a_huge_finite_output_is_an_error(method):
    model = Model(lambda i, out, s: out * 1e30 if i >= 1 else out)
    with pytest.raises(ModelOutputNotFinite, match="out of range"):
        sample(method, model, noise(), [1.0, 0.5, 0.0])


@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_model_returning_pure_noise_ends_finite_or_with_a_named_setting(method):
    gen = torch.Generator().manual_seed(5)
    model = Model(lambda i, out, s: torch.randn(out.shape, generator=gen))
    try:
        out = sample(method, model, noise(), [1.0, 0.0], max_model_calls=200)
    except SolverError as err:
        assert "log10_rtol" in str(err)
    else:
        assert_finite(out)
    assert len(model.sigmas) <= 200


# --- bad schedules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ADAPTIVE + ["euler", "heun"])
@pytest.mark.parametrize("sigmas, fragment", [
    ([float("nan"), 0.0], "sigmas[0] is nan"),
    ([float("inf"), 0.0], "sigmas[0] is inf"),
    ([1.0, float("nan"), 0.0], "sigmas[1] is nan"),
    ([-1.0, 0.0], "sigmas[0] is -1"),
    ([1.0, 0.5, -0.1], "sigmas[2] is -0.1"),
    ([1e30, 0.0], "sigmas[0] is 1e+30"),
    ([1.0, 0.0, 0.5, 0.0], "sigmas[1] is 0"),
    ([0.0, 0.5, 1.0], "sigmas[0] is 0"),
])
def test_bad_sigmas_are_refused_before_any_model_call(method, sigmas, fragment):
    """Items 4 and 8: nan,0 / inf,0 gave internal ValueError / ZeroDivisionError, -1,0 ran the model at -1."""
    model = Model()
    with pytest.raises(SamplerInputError, match="sigmas") as err:
        sample(method, model, noise(), sigmas)
    assert fragment in str(err.value)
    assert not model.sigmas, "the model was called"


@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_schedule_that_changes_direction_is_refused_by_adaptive_methods(method):
    with pytest.raises(SamplerInputError, match="fixed-step"):
        sample(method, Model(), noise(), [1.0, 0.3, 0.6, 0.0])


@pytest.mark.parametrize("method", ADAPTIVE + ["euler"])
@pytest.mark.parametrize("sigmas", [[], [1.0], [0.5, 0.5]])
def test_an_empty_single_or_flat_schedule_returns_the_input_unchanged(method, sigmas):
    """ComfyUI's own samplers return the latent for fewer than two distinct sigmas."""
    model, x = Model(), noise()
    assert torch.equal(sample(method, model, x, sigmas), x) and not model.sigmas


@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_rising_schedule_is_integrated_back_to_the_noise(method):
    """Item 3: every adaptive method returned its input for a rising schedule (0 calls). Inversion:
    from the exact point at sigma 0.05 up to 1 must give back the noise it came from."""
    n = noise(batch=3, seed=2, dtype=torch.float64)
    x = torch.stack([single_gaussian_flow(MEAN, STD, image, 0.05) for image in n])
    model = Model()
    out = sample(method, model, x, [0.05, 0.5, 1.0], log10_rtol=-6, log10_atol=-7, max_model_calls=3000)
    assert model.sigmas, "a rising schedule was not integrated"
    assert max(model.sigmas) <= 1.0 + 1e-12 and min(model.sigmas) >= 0.05 - 1e-12
    assert torch.allclose(out, n, atol=1e-4), float((out - n).abs().max())


@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_rising_partial_schedule_ends_at_its_last_sigma(method):
    x = exact(noise(seed=3, dtype=torch.float64), 1.0, 0.2)
    out = sample(method, Model(), x, [0.2, 0.6], log10_rtol=-6, log10_atol=-7, max_model_calls=3000)
    assert torch.allclose(out, exact(x, 0.2, 0.6), atol=1e-4)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_denoise_once_path_checks_the_model_output(method):
    """Item 2: when the start sigma is at or below sigma_min the model's output was returned unchecked."""
    model = Model(nan_at(0))
    with pytest.raises(ModelOutputNotFinite):
        sample(method, model, noise(), [0.0005, 0.0])


# --- bad latents ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ADAPTIVE + ["euler"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_one_bad_image_in_the_input_latent_is_named_before_any_model_call(method, bad):
    """Item 4: a batch of 8 with one NaN image got 'the model returned NaN, try weight_dtype'."""
    x = noise(batch=8)
    x[5, 1, 2, 3] = bad
    model = Model()
    with pytest.raises(SamplerInputError, match=r"latent") as err:
        sample(method, model, x, [1.0, 0.5, 0.0])
    assert "image 5" in str(err.value) and "ModelComputeDtype" not in str(err.value)
    assert not model.sigmas


@pytest.mark.parametrize("method", ADAPTIVE + ["euler", "rk4", "exp_multistep", "flow_multistep", "exp_singlestep",
                                              "exp_multistep_staged_end"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_latent_is_solved_in_float32_and_returned_in_its_dtype(method, dtype):
    """Item 4: a half-precision latent into a float32 model: the solve runs in float32 (state
    arithmetic in fp16 loses the tolerances and overflows x/sigma) and the result is exact to the
    latent's own precision."""
    x = noise(batch=2, seed=4, dtype=dtype)
    settings = dict(log10_rtol=-4, log10_atol=-5, max_model_calls=2000)
    sigmas = [1.0, 0.7, 0.4, 0.2, 0.1, 0.0]
    out = sample(method, Model(), x, sigmas, **settings)
    assert out.dtype == dtype
    assert_finite(out)
    in_float32 = sample(method, Model(), x.float(), sigmas, **settings)
    assert torch.allclose(out.double(), in_float32.double(), atol=0.02)
    if method in ADAPTIVE:
        assert torch.allclose(out.double(), exact(x.double(), 1.0, 0.001), atol=0.02)


def test_an_integer_latent_is_refused():
    with pytest.raises(SamplerInputError, match="latent"):
        sample("dopri5", Model(), torch.zeros((1, 4, 8, 8), dtype=torch.int32), [1.0, 0.0])


# --- conditioning -----------------------------------------------------------------------------------

def test_non_finite_conditioning_names_the_prompt_weight():
    """Item 4: a prompt weight (tag:1e308) overflows the conditioning to inf."""
    cond = torch.ones((1, 77, 8))
    cond[0, 3] = float("inf")
    fn = make_sampler_function(SamplerConfig("dopri5"), logger=_Log(),
                               conditioning_of=lambda m: {"positive": [cond], "negative": [torch.zeros(1, 77, 8)]})
    model = Model()
    with pytest.raises(SamplerInputError, match=r"positive") as err:
        fn(model, noise(), torch.tensor([1.0, 0.0]), disable=True)
    assert "(tag:1e308)" in str(err.value) and not model.sigmas


# --- extreme settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ADAPTIVE)
def test_tolerances_below_the_latent_precision_are_clamped_and_logged(method):
    """Item 5: log10_rtol -12 in float32 ran thousands of calls without moving; the effective
    tolerance is clamped to what float32 resolves, and the solve finishes well inside the budget."""
    log = _Log()
    model = Model()
    out = sample(method, model, noise(), [1.0, 0.0], log=log, log10_rtol=-12, log10_atol=-12, max_model_calls=3000)
    assert_finite(out)
    assert any("float32" in line and "log10_rtol" in line for line in log.lines), log.lines
    assert len(model.sigmas) < 1500, len(model.sigmas)
    assert torch.allclose(out, exact(noise(), 1.0, 1e-3), atol=1e-3)


def test_float64_keeps_tolerances_it_can_resolve():
    log = _Log()
    sample("dopri5", Model(), noise(dtype=torch.float64), [1.0, 0.0], log=log, log10_rtol=-10, log10_atol=-11,
           max_model_calls=5000)
    assert not any("log10_rtol" in line for line in log.lines)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_the_smallest_budget_and_sigma_min_extremes_end_finite(method):
    smallest = max(4, SamplerConfig(method).calls_for_one_step)
    for config in (dict(max_model_calls=smallest), dict(sigma_min=0.5), dict(sigma_min=1e-5), dict(log10_rtol=0, log10_atol=0)):
        out = sample(method, Model(), noise(), [1.0, 0.0], **config)
        assert_finite(out)


def test_every_method_is_covered():
    assert set(ADAPTIVE) | set(FIXED) == set(METHODS)
