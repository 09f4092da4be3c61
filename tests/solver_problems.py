"""Test problems shared by the solver tests."""

from __future__ import annotations

import torch

from flowanime.bench.gmm import GaussianMixture, single_gaussian_flow


def single_gaussian(batch=3, seed=0, std=0.05):
    """One Gaussian (its flow has a closed form): (mixture, noise, exact solution at sigma=0)."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn((4, 8, 8), generator=gen) * 0.7
    noise = torch.randn((batch, 4, 8, 8), generator=gen)
    exact = torch.stack([single_gaussian_flow(mean, std, n, 0.0) for n in noise])
    return GaussianMixture.single(mean, std), noise, exact
