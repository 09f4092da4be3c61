"""Unit tests of the rectified-flow schedule math (no ComfyUI needed)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowanime.model_sampling.flow import (
    FlowSchedule,
    flux_resolution_shift,
    image_tokens,
    resolution_shift,
    sd3_resolution_shift,
    time_shift,
)

shifts = st.floats(min_value=0.05, max_value=20.0)
times = st.floats(min_value=0.0, max_value=1.0)


def test_time_shift_hand_computed_values():
    assert time_shift(3.0, 0.5) == pytest.approx(0.75)  # 1.5 / 2
    assert time_shift(3.0, 0.001) == pytest.approx(0.003 / 1.002)
    assert time_shift(1.0, 0.37) == 0.37
    assert time_shift(3.0, 0.0) == 0.0 and time_shift(3.0, 1.0) == 1.0


@given(st.floats(min_value=-3.0, max_value=3.0), st.floats(min_value=1e-4, max_value=1.0))
def test_time_shift_equals_flux_exponential_form(mu, t):
    # Flux writes the same shift as e^mu / (e^mu + (1/t - 1)) (flux/sampling.py time_shift, sigma=1).
    assert time_shift(math.exp(mu), t) == pytest.approx(math.exp(mu) / (math.exp(mu) + (1 / t - 1)), rel=1e-12)


@given(shifts, shifts, times)
def test_shifts_compose_multiplicatively(a, b, t):
    # s*t/(1+(s-1)t) is a Moebius map of the odds t/(1-t) -> s*t/(1-t), so shifts multiply.
    assert time_shift(a, time_shift(b, t)) == pytest.approx(time_shift(a * b, t), abs=1e-12)


@given(shifts, times)
def test_shift_is_inverted_by_its_reciprocal(s, t):
    assert time_shift(1 / s, time_shift(s, t)) == pytest.approx(t, abs=1e-12)


@given(shifts, times, times)
def test_shift_is_monotone_on_unit_interval(s, t1, t2):
    lo, hi = sorted((t1, t2))
    assert 0.0 <= time_shift(s, lo) <= time_shift(s, hi) <= 1.0 + 1e-15


def test_sigma_table_matches_formula():
    sched = FlowSchedule(shift=3.0)
    table = sched.sigma_table()
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    expected = 3.0 * t / (1 + 2.0 * t)
    assert table.shape == (1000,) and table.dtype == torch.float32
    assert torch.allclose(table.double(), expected, atol=5e-7, rtol=0)  # a few float32 ulps
    assert table[-1] == 1.0 and bool((table[1:] > table[:-1]).all())


def test_network_timestep_conventions():
    sigma = torch.tensor([0.25, 1.0])
    assert torch.equal(FlowSchedule(multiplier=1000).network_timestep(sigma), torch.tensor([250.0, 1000.0]))
    assert torch.equal(FlowSchedule(timestep_convention="1 - sigma").network_timestep(sigma), torch.tensor([750.0, 0.0]))
    assert FlowSchedule(multiplier=1.0).network_timestep(0.25) == 0.25


def test_sigma_from_timestep_applies_the_shift_like_comfyui():
    # ComfyUI's DiscreteFlow.sigma(t) = shift(t / m): the normal scheduler spaces steps with it.
    assert FlowSchedule(shift=3.0).sigma_from_timestep(500.0) == pytest.approx(0.75)
    assert FlowSchedule(shift=3.0, timestep_convention="1 - sigma").sigma_from_timestep(500.0) == pytest.approx(0.75)
    assert FlowSchedule(shift=1.0, timestep_convention="1 - sigma").sigma_from_timestep(250.0) == pytest.approx(0.75)


def test_percent_to_sigma():
    sched = FlowSchedule(shift=3.0)
    assert sched.percent_to_sigma(0.0) == 1.0 and sched.percent_to_sigma(1.0) == 0.0
    assert sched.percent_to_sigma(0.5) == pytest.approx(0.75)


@pytest.mark.parametrize("shift", [1.0, 3.0, 2.7])
def test_percent_to_sigma_equals_the_float32_sigma_table_at_the_same_time(shift):
    """A bound at a table time is that float32 table entry exactly (comfy/model_sampling.py@38a99a8
    rounds the same way), so a step at the bound is inside the range, never out by rounding."""
    sched = FlowSchedule(shift=shift)
    table = sched.sigma_table(1000)
    for index in (0, 99, 333, 500, 749, 998):
        percent = 1.0 - (index + 1) / 1000
        assert sched.percent_to_sigma(percent) == float(table[index]), index


def test_denoised_for_both_velocity_conventions():
    data, noise, sigma = torch.tensor([0.3, -1.2]), torch.tensor([1.1, 0.4]), 0.6
    x = (1 - sigma) * data + sigma * noise
    assert torch.allclose(FlowSchedule().denoised(x, sigma, noise - data), data)
    assert torch.allclose(FlowSchedule(velocity_convention="data - noise").denoised(x, sigma, data - noise), data)


def test_sd3_resolution_shift_follows_sqrt_rule():
    # SD3 paper 5.3.2: alpha = sqrt(m/n); 4x the pixels doubles the shift.
    assert sd3_resolution_shift(3.0, tokens=16384, base_tokens=4096) == pytest.approx(6.0)
    assert resolution_shift("sd3", 3.0, 1024, 2048, 2048) == pytest.approx(6.0)
    assert resolution_shift("sd3", 3.0, 1024, 512, 512) == pytest.approx(1.5)
    assert resolution_shift("off", 3.0, 1024, 2048, 2048) == 3.0


def test_flux_resolution_shift_reproduces_comfyui_model_sampling_flux():
    # ComfyUI ModelSamplingFlux: mu = 0.5 + (1.15-0.5)/(4096-256) * (W*H/256 - 256), shift = e^mu.
    def comfy_flux_shift(width, height):
        return math.exp(0.5 + (1.15 - 0.5) / (4096 - 256) * (width * height / 256 - 256))

    for w, h in [(1024, 1024), (512, 512), (832, 1216), (256, 256)]:
        assert resolution_shift("flux", math.exp(1.15), 1024, w, h) == pytest.approx(comfy_flux_shift(w, h), rel=1e-12)
    assert flux_resolution_shift(2.0, tokens=777, base_tokens=777) == 2.0
    assert image_tokens(1024, 1024) == 4096


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(shift=0.0), "shift"),
        (dict(shift=-1.0), "shift"),
        (dict(shift=float("nan")), "shift"),
        (dict(multiplier=0.0), "multiplier"),
        (dict(timestep_convention="t"), "timestep_convention"),
        (dict(velocity_convention="eps"), "velocity"),
    ],
)
def test_bad_values_get_an_error_naming_the_setting(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        FlowSchedule(**kwargs)


def test_unknown_resolution_mode_is_rejected():
    with pytest.raises(ValueError, match="'resolution_shift'"):
        resolution_shift("auto", 3.0, 1024, 512, 512)
