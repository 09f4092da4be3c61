"""The README's main command, the sampler benchmark, runs end to end (on its small --smoke problem)
against the real ComfyUI's samplers and schedulers, and prints its tables and plot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]


def test_sampler_benchmark_runs_and_prints_its_tables(comfyui, tmp_path):
    env = {**os.environ, "COMFYUI_PATH": str(comfyui.comfy_path)}
    proc = subprocess.run(
        [sys.executable, str(PACK_ROOT / "bench" / "bench_samplers.py"), "--smoke", "--batch", "2", "--no-overhead",
         "--out", str(tmp_path)],
        cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "reference: scipy DOP853" in out
    assert "Model calls per image to reach each error level" in out
    for sampler in ("euler / simple", "dpmpp_2m / karras", "dopri5", "bosh3", "rk4 (fixed) / simple"):
        assert sampler in out, sampler
    # every error level has a row with our best and the built-ins' best
    assert sum(line.strip().startswith(("3e-02", "1e-02", "3e-03", "1e-03", "3e-04", "1e-04")) for line in out.splitlines()) == 6
    if "matplotlib not installed" not in out:
        assert (tmp_path / "samplers-smoke.png").stat().st_size > 10_000
        assert not (tmp_path / "samplers.png").exists()  # the full run's plot is never overwritten
