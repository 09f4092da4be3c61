"""Test problems shared by the solver tests."""

from __future__ import annotations

import torch

from flowanime.bench.gmm import GaussianMixture, single_gaussian_flow


def single_gaussian(batch=3, seed=0, std=0.05, sigma_end=0.0, dtype=torch.float32):
    """One Gaussian (its flow has a closed form): (mixture, noise, exact solution at sigma_end), in dtype."""
    gen = torch.Generator().manual_seed(seed)
    mean = (torch.randn((4, 8, 8), generator=gen) * 0.7).to(dtype)
    noise = torch.randn((batch, 4, 8, 8), generator=gen).to(dtype)
    exact = torch.stack([single_gaussian_flow(mean, std, n, sigma_end) for n in noise])
    return GaussianMixture.single(mean, std), noise, exact
