"""An analytic stand-in for a diffusion model: the exact denoiser of a Gaussian mixture under the
rectified-flow path x = (1 - sigma) * data + sigma * noise, and a high-precision reference solve.

Data ~ sum_k pi_k N(mu_k, s_k^2 I). Given component k, x_sigma ~ N(a mu_k, v_k I) with a = 1 - sigma
and v_k = a^2 s_k^2 + sigma^2, and E[data | x, k] = mu_k + (a s_k^2 / v_k)(x - a mu_k). The exact
denoiser is the posterior-weighted sum of those. Small s_k make the flow stiff near sigma -> 0, as
real latent models are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GaussianMixture:
    means: torch.Tensor  # [K, d]
    stds: torch.Tensor  # [K]
    log_weights: torch.Tensor  # [K]
    shape: tuple  # one image's latent shape, prod(shape) == d

    @classmethod
    def latent_like(cls, shape=(16, 32, 32), components=16, seed=0, dtype=torch.float32, device="cpu",
                    std_range=(0.01, 0.2), base_scale=0.6, spread=0.4):
        """Modes in latent-like dimensions: means around a shared image (base_scale * N(0, 1)) spread
        by spread * N(0, 1) each, component stds log-uniform in std_range. The defaults are the
        benchmark's narrow mixture (unit-scale means, stds in [0.01, 0.2])."""
        gen = torch.Generator().manual_seed(seed)
        d = math.prod(shape)
        base = torch.randn(d, generator=gen) * base_scale
        means = base + torch.randn(components, d, generator=gen) * spread
        stds = torch.exp(torch.empty(components).uniform_(math.log(std_range[0]), math.log(std_range[1]), generator=gen))
        log_weights = torch.log_softmax(torch.randn(components, generator=gen), dim=0)
        return cls(means.to(device, dtype), stds.to(device, dtype), log_weights.to(device, dtype), tuple(shape))

    @classmethod
    def single(cls, mean: torch.Tensor, std: float):
        """One Gaussian: its flow has the closed-form solution in `single_gaussian_flow`."""
        shape = tuple(mean.shape)
        return cls(mean.reshape(1, -1), torch.tensor([std], dtype=mean.dtype), torch.zeros(1, dtype=mean.dtype), shape)

    def to(self, dtype=None, device=None):
        return GaussianMixture(self.means.to(device, dtype), self.stds.to(device, dtype),
                               self.log_weights.to(device, dtype), self.shape)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[data | x_sigma = x]; sigma a float or a per-image tensor, as ComfyUI passes it."""
        batch = x.shape[0]
        flat = x.reshape(batch, -1)
        if self.means.dtype != flat.dtype or self.means.device != flat.device:
            return self.to(flat.dtype, flat.device).denoise(x, sigma)
        sigma = torch.as_tensor(sigma, dtype=flat.dtype, device=flat.device).reshape(-1, 1).expand(batch, 1)
        a = 1.0 - sigma  # [B, 1]
        var = a.square() * self.stds.square() + sigma.square()  # [B, K]
        d = flat.shape[1]
        # ||x - a mu_k||^2 without forming B x K x d
        sq = flat.square().sum(1, keepdim=True) - 2 * a * (flat @ self.means.T) + a.square() * self.means.square().sum(1)
        logits = self.log_weights - 0.5 * sq / var - 0.5 * d * torch.log(var)
        w = torch.softmax(logits, dim=1)  # [B, K]
        gain = a * self.stds.square() / var  # [B, K]: E[data|x,k] = mu_k (1 - a*gain) + gain * x
        out = (w * (1 - a * gain)) @ self.means + (w * gain).sum(1, keepdim=True) * flat
        return out.reshape(x.shape)

    def sample_noise(self, batch: int, seed: int = 1, dtype=torch.float32):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.shape), generator=gen).to(dtype)


def single_gaussian_flow(mean: torch.Tensor, std: float, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact rectified-flow ODE solution for N(mean, std^2 I) data started from x(1) = noise:
    x(sigma) = (1 - sigma) mean + sqrt((1 - sigma)^2 std^2 + sigma^2) noise."""
    return (1 - sigma) * mean + math.sqrt((1 - sigma) ** 2 * std**2 + sigma**2) * noise


def reference_solution(gmm: GaussianMixture, noise: torch.Tensor, sigma_end: float = 1e-7, rtol: float = 1e-10,
                       atol: float = 1e-10) -> torch.Tensor:
    """x(0) by scipy's DOP853 in float64 on the velocity form dx/dsigma = (x - D)/sigma, one image at a
    time (independent of our solvers, forms and batching), finished with D at sigma_end."""
    g64 = gmm.to(torch.float64)
    return solve_reference(g64.denoise, noise, sigma_end=sigma_end, rtol=rtol, atol=atol)


def solve_reference(denoise64, noise: torch.Tensor, velocity64=None, sigma_start: float = 1.0, sigma_end: float = 1e-7,
                    rtol: float = 1e-10, atol: float = 1e-10) -> torch.Tensor:
    """x(0) by scipy's DOP853 in float64 from x(sigma_start) = noise, one image at a time: the ODE
    dx/dsigma = velocity64(x, sigma), by default (x - denoise64(x, sigma)) / sigma, finished with
    denoise64 at sigma_end. Both callables take and return float64 tensors of shape [1, *shape]."""
    from scipy.integrate import solve_ivp

    shape = tuple(noise.shape[1:])
    if velocity64 is None:
        def velocity64(x, sigma):
            return (x - denoise64(x, sigma)) / sigma
    out = []
    for image in noise.to(torch.float64):
        def rhs(sigma, y):
            x = torch.from_numpy(y).reshape(1, *shape)
            return velocity64(x, sigma).reshape(-1).numpy()

        sol = solve_ivp(rhs, (sigma_start, sigma_end), image.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=atol)
        assert sol.success, sol.message
        x_end = torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).reshape(1, *shape)
        out.append(denoise64(x_end, sigma_end)[0])
    return torch.stack(out)


def rms_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over the batch of each image's RMS error."""
    diff = (x.double() - reference.double()).flatten(1)
    return float(diff.square().mean(1).sqrt().mean())
