"""The KSampler entries' default tolerances meet the accuracy target the README derives (a latent
error an 8-bit image does not show) on the benchmark's problems, against scipy's DOP853 at 1e-10:
the wide mixture (whose draws settle on a mode early: a loose solve sends some to another mode)
and the trained MMDiT (which needs ComfyUI's MMDiT class)."""

from __future__ import annotations

import pytest
import torch

from flowanime.bench.gmm import rms_error
from flowanime.bench.problems import gmm_wide, mmdit_digits
from flowanime.nodes.sampler_nodes import ACCURACY_TARGET, KSAMPLER_ENTRIES
from flowanime.samplers.k_sampler import make_sampler_function

# The adaptive entries' tolerances set their accuracy; a fixed-step entry's is set by the scheduler's steps.
ADAPTIVE_ENTRIES = sorted(name for name, config in KSAMPLER_ENTRIES.items() if config.adaptive)


def entry_error(problem, entry, batch):
    noise = problem.noise(batch)

    def model(x, sigma, **kwargs):
        return problem.denoise(x, sigma)

    out = make_sampler_function(KSAMPLER_ENTRIES[entry])(model, noise.clone(), torch.tensor([1.0, 0.0]), disable=True)
    return rms_error(out, problem.reference(noise))


@pytest.fixture(scope="module")
def wide():
    return gmm_wide()


@pytest.mark.parametrize("entry", ADAPTIVE_ENTRIES)
def test_entry_defaults_meet_the_accuracy_target_on_the_wide_mixture(wide, entry):
    assert entry_error(wide, entry, 4) <= ACCURACY_TARGET


@pytest.fixture(scope="module")
def network(comfyui):
    return mmdit_digits()  # one instance: its reference is solved once


@pytest.mark.parametrize("entry", ADAPTIVE_ENTRIES)
def test_entry_defaults_meet_the_accuracy_target_on_the_trained_network(network, entry):
    assert entry_error(network, entry, 2) <= ACCURACY_TARGET
