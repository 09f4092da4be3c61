"""bench/two_call_floor.py: the floor on two-call samplers that call the model at sigma 1, checked
against a single Gaussian's closed-form flow, its ordering properties on a mixture, and its command
line on the small mixtures."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch

from flowanime.bench.gmm import GaussianMixture, reference_solution, single_gaussian_flow
from flowanime.bench.two_call_floor import ddim_below_one, two_call_floor

PACK_ROOT = Path(__file__).resolve().parents[1]


def _single_gaussian(std=0.3):
    mean = torch.linspace(-1, 1, 48, dtype=torch.float64).reshape(3, 4, 4)
    gmm = GaussianMixture.single(mean, std).to(torch.float64)
    noise = torch.randn((3, 3, 4, 4), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return gmm, mean, noise, single_gaussian_flow(mean, std, noise, 0.0)


def test_one_gaussian_ends_in_the_span_of_noise_and_mean_so_the_floor_is_zero():
    """x0 = mean + std noise, and D(noise, 1) is the mean: the per-image fit, and one fit for all
    images, recover it exactly (the three features span only two directions; least squares copes)."""
    gmm, _, noise, reference = _single_gaussian()
    result = two_call_floor(gmm.denoise, noise, reference, sigmas=(0.9, 0.5), mean_weights=(0.0, 1.0))
    assert result.floor < 1e-9 and result.fixed < 1e-9


def test_the_ddim_column_is_ddims_closed_form_on_one_gaussian():
    """DDIM [1, s, 0]: x_s = s noise + (1 - s) mean, so D(x_s, s) = mean + (1 - s) s std^2 / v noise
    with v = (1 - s)^2 std^2 + s^2; the reference is mean + std noise."""
    std = 0.3
    gmm, _, noise, reference = _single_gaussian(std)
    for s in (0.9, 0.5, 0.1):
        v = (1 - s) ** 2 * std**2 + s**2
        expected = abs(std - (1 - s) * s * std**2 / v) * float(noise.flatten(1).square().mean(1).sqrt().mean())
        result = two_call_floor(gmm.denoise, noise, reference, sigmas=(s,), mean_weights=(1.0,))
        assert math.isclose(result.ddim, expected, rel_tol=1e-9), s
        # a schedule "below one" that starts at 1 is the same DDIM schedule
        below, at = ddim_below_one(gmm.denoise, noise, reference, starts=(1.0,), seconds=(s,))
        assert math.isclose(below, result.ddim, rel_tol=1e-9) and at == (1.0, s)


def test_on_a_mixture_the_floor_is_below_every_sampler_it_bounds():
    """Per-image coefficients do at least as well as one set for all images and as DDIM's own output
    (coefficients 0, 0, 1), at the grid point where each is best."""
    gmm = GaussianMixture.latent_like(shape=(4, 8, 8), components=6, seed=3).to(torch.float64)
    noise = gmm.sample_noise(3, seed=9, dtype=torch.float64)
    reference = reference_solution(gmm, noise, rtol=1e-8, atol=1e-8)
    result = two_call_floor(gmm.denoise, noise, reference, sigmas=(0.95, 0.8, 0.5, 0.2))
    assert result.floor <= result.fixed + 1e-12
    assert result.floor <= result.ddim + 1e-12
    assert result.floor_at[0] in (0.95, 0.8, 0.5, 0.2) and result.ddim_at in (0.95, 0.8, 0.5, 0.2)


def test_the_command_prints_the_floor_table_and_how_schedules_carry_over(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(PACK_ROOT / "bench" / "two_call_floor.py"), "--smoke", "--problems", "gmm-narrow",
         "gmm-wide", "--batch", "2", "--out", str(tmp_path)],
        cwd=PACK_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| gmm-narrow |", "| gmm-wide |"))]
    assert len(rows) == 2 and all(len(row.split("|")) == 7 for row in rows)
    assert proc.stdout.count("'s [") == 2  # the carry-over table: a row per problem
    bad = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "two_call_floor.py"), "--batch", "0"],
                         cwd=PACK_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--batch must be at least 1" in bad.stderr
