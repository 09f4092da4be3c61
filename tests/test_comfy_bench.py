"""The README's main command, the sampler benchmark, runs end to end (on its small --smoke settings)
against the real ComfyUI's samplers and schedulers on all three problems, and prints its tables,
summary and plot. The trained problem's committed fixture loads into ComfyUI's MMDiT class and
behaves as a denoiser. Both run in a subprocess: they import ComfyUI's modules themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ("gmm-narrow", "gmm-wide", "mmdit-digits")
LEVELS = ("3e-02", "1e-02", "3e-03", "1e-03", "3e-04", "1e-04")


def test_sampler_benchmark_runs_and_prints_its_tables(comfyui, tmp_path):
    env = {**os.environ, "COMFYUI_PATH": str(comfyui.comfy_path)}
    proc = subprocess.run(
        [sys.executable, str(PACK_ROOT / "bench" / "bench_samplers.py"), "--smoke", "--batch", "2", "--no-overhead",
         "--out", str(tmp_path)],
        cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for problem in PROBLEMS:  # every problem has its section, reference and table
        assert f"=== problem {problem}:" in out, problem
        assert f"**{problem}**:" in out, problem
    assert out.count("reference: scipy DOP853") == len(PROBLEMS)
    assert out.count("Model calls per image to reach each error level") == len(PROBLEMS)
    for sampler in ("euler / simple", "dpmpp_2m / karras", "uni_pc / simple", "seeds_2 (eta 0) / simple", "sa_solver (eta 0) / karras",
                    "dopri5", "bosh3", "rk4 (fixed) / simple"):
        assert sampler in out, sampler
    # every error level has a row per problem, with our best, the built-ins' best and the ratio
    rows = [line for line in out.splitlines() if line.startswith(tuple(f"| {lv} |" for lv in LEVELS))]
    assert len(rows) == len(LEVELS) * len(PROBLEMS)
    summary = json.loads((tmp_path / "summary-smoke.json").read_text(encoding="utf-8"))
    assert [p["problem"] for p in summary["problems"]] == list(PROBLEMS)
    for p in summary["problems"]:
        assert [lv["level"] for lv in p["levels"]] == [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
        assert "ComfyUI built-ins" in p["peer_families"]
        reached = p["levels"][0]["peers"]["ComfyUI built-ins"]  # the loosest level is reached at smoke settings
        assert reached is not None and reached["error"] <= 3e-2 and " / " in reached["config"]  # sampler / scheduler
    assert set(summary["seconds_per_problem"]) == set(PROBLEMS)
    assert (tmp_path / "summary-smoke.md").read_text(encoding="utf-8").count("| 3e-02 |") == len(PROBLEMS)
    if "matplotlib not installed" not in out:
        assert (tmp_path / "samplers-smoke.png").stat().st_size > 10_000
        assert not (tmp_path / "samplers.png").exists()  # the full run's plot is never overwritten


def test_benchmark_measures_a_held_out_mixture_from_the_command_line(comfyui, tmp_path):
    """--gmm: a mixture nobody tuned on, given by its parameters, measured the same way; a bad spec is
    refused with the setting named, before anything runs."""
    env = {**os.environ, "COMFYUI_PATH": str(comfyui.comfy_path)}
    script = [sys.executable, str(PACK_ROOT / "bench" / "bench_samplers.py"), "--smoke", "--batch", "2", "--no-overhead",
              "--out", str(tmp_path)]
    spec = "components=3,seed=5,std_lo=0.05,std_hi=0.4,base_scale=0.8,spread=0.9,noise_seed=7"
    proc = subprocess.run([*script, "--gmm", spec], cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "**gmm-k3-s5**: held-out 3-component mixture" in proc.stdout and "(not tuned on)" in proc.stdout
    summary = json.loads((tmp_path / "summary-smoke.json").read_text(encoding="utf-8"))
    assert [p["problem"] for p in summary["problems"]] == ["gmm-k3-s5"]  # only the named problems, none by default
    assert summary["problems"][0]["levels"][0]["peers"]["ComfyUI built-ins"] is not None
    for bad, named in (("components=3,seed=5", "missing std_lo"), (spec.replace("std_lo=0.05", "std_lo=0.9"), "std_lo"),
                       (spec.replace("components=3", "components=999"), "components must be in [1, 64]"),
                       (spec + ",colour=red", "'colour=red' is not key=value")):
        proc = subprocess.run([*script, "--gmm", bad], cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 2 and named in proc.stderr, (bad, proc.stderr[-500:])


FIXTURE_CHECK = r"""
import json, sys, types, torch
sys.path.insert(0, sys.argv[1])
pkg = types.ModuleType("flowanime"); pkg.__path__ = [sys.argv[2]]; sys.modules["flowanime"] = pkg
from flowanime.bench import problems as P
torch.set_num_threads(1)
p = P.mmdit_digits()
x = p.noise(2)
sigma = torch.tensor([1e-6, 0.5])
d = p.denoise(x, sigma)
tiny = p.denoise(x, 1e-6)
cal = p.calibration_noise(2)
try:
    p.calibration_noise(2, seed=21)
    seed_check = "accepted"
except ValueError:
    seed_check = "refused"
p.reference_rtol = 1e-4  # finite and the right shape; the benchmark's own is 1e-10
ref = p.reference(x[:1])
print(json.dumps({
    "shape": list(p.shape), "d_shape": list(d.shape), "d_dtype": str(d.dtype),
    "tiny_rel": float((tiny - x).norm() / x.norm()), "mid_rel": float((d[1] - x[1]).norm() / x[1].norm()),
    "per_image_matches": float((d[0] - tiny[0]).abs().max()),
    "cal_differs": float((cal - x).abs().max()), "seed_check": seed_check,
    "ref_finite": bool(torch.isfinite(ref).all()), "ref_shape": list(ref.shape),
    "ref_rms": float(ref.square().mean().sqrt()),
}))
"""


def test_trained_problem_fixture_loads_and_denoises(comfyui):
    fixture = PACK_ROOT / "bench" / "fixtures" / "mmdit_patches.safetensors"
    assert fixture.is_file() and fixture.stat().st_size < 2_000_000  # committed, under 2 MB
    env = {**os.environ, "COMFYUI_PATH": str(comfyui.comfy_path)}
    proc = subprocess.run([sys.executable, "-c", FIXTURE_CHECK, str(comfyui.comfy_path), str(PACK_ROOT)],
                          cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["shape"] == [3, 16, 16] and r["d_shape"] == [2, 3, 16, 16] and r["d_dtype"] == "torch.float32"
    assert r["tiny_rel"] < 1e-4  # D(x, sigma) -> x as sigma -> 0: x - sigma * v with a bounded v
    assert r["mid_rel"] > 0.1  # at sigma 0.5 the network does denoise
    assert r["per_image_matches"] < 1e-5  # a per-image sigma tensor gives each image its own sigma
    assert r["cal_differs"] > 0.5 and r["seed_check"] == "refused"  # calibration noise is never evaluation noise
    assert r["ref_finite"] and r["ref_shape"] == [1, 3, 16, 16]
    assert 0.2 < r["ref_rms"] < 5  # a sample of the normalised data's scale, not noise blown up


def test_device_benchmark_runs_on_the_cpu_and_prints_its_table(comfyui):
    """bench/bench_device.py (figures from a GPU in the README) checked where CI runs: a depth-2 MMDiT
    at 128x128, every sampler it compares in the table, each with its calls and a finite time."""
    env = {**os.environ, "COMFYUI_PATH": str(comfyui.comfy_path)}
    proc = subprocess.run(
        [sys.executable, str(PACK_ROOT / "bench" / "bench_device.py"), "--device", "cpu", "--size", "128",
         "--repeats", "1", "--euler-steps", "4", "--max-calls", "8"],
        cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("beyond a call ms")[1].splitlines()[1:]
    names = [line.split()[0] for line in table if line.strip()]
    assert names == ["euler", "euler+read-back", "dpmpp_2m", "flowanime_dopri5", "flowanime_bosh3", "flowanime_adams_pc",
                     "flowanime_flow_adams_pc", "flowanime_flow_multistep"]
    calls = {line.split()[0]: int(line.split()[1]) for line in table if line.strip()}
    assert calls["euler"] == calls["euler+read-back"] == 4 and calls["flowanime_flow_multistep"] == 4
    assert all(2 <= calls[n] <= 8 for n in names if n.startswith("flowanime_") and n != "flowanime_flow_multistep")
