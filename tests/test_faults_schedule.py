"""Fault suite, schedule math: extreme widget values of the rectified-flow patch (issue 12, item 7).

Every legal widget value gives a sigma table that is finite, inside (0, 1] and strictly increasing
(what ComfyUI's schedulers read, flipped), or an error naming the setting to change.
"""

import itertools
import math

import pytest
import torch

from flowanime.model_sampling.flow import (
    MAX_SHIFT,
    MIN_SHIFT,
    FlowSchedule,
    check_sigma_table,
    flux_resolution_shift,
    resolution_shift,
    sd3_resolution_shift,
)

pytestmark = pytest.mark.faults

# The node's widget ranges: shift 0.01..100, base_resolution 64..16384; latent sides up to 16384 px.
SHIFTS = (0.01, 1.0, 3.0, 100.0)
BASES = (64, 1024, 16384)
SIDES = (8, 64, 1024, 8192, 16384)


def assert_valid_table(table):
    assert torch.isfinite(table).all()
    assert float(table.min()) > 0 and float(table.max()) <= 1.001  # float32 rounding at t = 1
    assert bool((table[1:] > table[:-1]).all()), "not strictly increasing"


@pytest.mark.parametrize("mode", ["sd3", "flux"])
def test_every_legal_widget_value_gives_a_valid_table(mode):
    """Item 7: flux at 8192 px and up at base 1024 gave an all-1 table, small bases an all-NaN one."""
    for shift, base, width, height in itertools.product(SHIFTS, BASES, SIDES, SIDES):
        s = resolution_shift(mode, shift, base, width, height)
        assert MIN_SHIFT <= s <= MAX_SHIFT and math.isfinite(s)
        assert_valid_table(FlowSchedule(s).sigma_table())


def test_the_issue_case_no_longer_overflows():
    s = flux_resolution_shift(3.0, 8192 * 8192 / 256, 1024 * 1024 / 256)
    assert s == MAX_SHIFT
    s = flux_resolution_shift(3.0, 16384 * 16384 / 256, 64 * 64 / 256)  # exp(177): overflowed float32
    assert s == MAX_SHIFT
    assert sd3_resolution_shift(0.01, 1.0, 16384 * 16384 / 256) == MIN_SHIFT


def test_the_shift_inside_the_bounds_is_unchanged():
    # the clamp must not touch ordinary values: Flux's anchor (e^1.15 at 4096 tokens) stays exact
    assert flux_resolution_shift(math.exp(1.15), 4096, 4096) == pytest.approx(math.exp(1.15), rel=1e-15)
    assert flux_resolution_shift(math.exp(1.15), 256, 4096) == pytest.approx(math.exp(0.5), rel=1e-12)
    assert sd3_resolution_shift(3.0, 4 * 4096, 4096) == pytest.approx(6.0, rel=1e-15)


def test_the_clamp_is_logged(caplog):
    with caplog.at_level("WARNING", logger="FlowAnime"):
        resolution_shift("flux", 3.0, 1024, 8192, 8192)
    assert any("resolution_shift" in r.getMessage() and "base_resolution" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("table, fragment", [
    (torch.tensor([0.1, float("nan"), 1.0]), "not finite"),
    (torch.tensor([0.1, 0.5, 0.5, 1.0]), "strictly increasing"),
    (torch.tensor([0.0, 0.5, 1.0]), "inside (0, 1]"),
    (torch.tensor([0.5, 0.9, 1.5]), "inside (0, 1]"),
])
def test_bad_tables_are_refused_naming_the_setting(table, fragment):
    with pytest.raises(ValueError, match="'shift'") as err:
        check_sigma_table(table, 3.0)
    assert fragment in str(err.value)


def test_a_shift_outside_the_bounds_is_refused_by_the_schedule():
    """A shift set through set_parameters (not the widget) beyond the bounds: a clear error, not a
    flat table."""
    with pytest.raises(ValueError, match="'shift'"):
        FlowSchedule(1e20).sigma_table()
