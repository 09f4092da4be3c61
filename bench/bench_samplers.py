"""Benchmark: model calls per image against error, for FlowAnime's ODE samplers and ComfyUI's own.

The model is the exact denoiser of a Gaussian mixture in latent-like dimensions under the
rectified-flow path (bench/gmm.py); the reference is scipy's DOP853 at 1e-10 in float64. Every
sampler runs through the callable ComfyUI's KSAMPLER runs, on a batch of images, on the SD3 shift-3
`simple` schedule ComfyUI computes. Prints a table, the model calls each needs per error level, and
the solver's own overhead per model call; writes a PNG plot (matplotlib, if installed).

    python bench/bench_samplers.py [--batch 4] [--out bench/out] [--competitors DIR ...]

A progress bar per family of samplers goes to stderr on a terminal (a summary line per family
otherwise). The full run writes bench/out/samplers.png; --smoke (a small problem, a few settings, no
overhead timing: seconds) writes bench/out/samplers-smoke.png, so it never replaces the full plot.

--competitors takes checkouts of redhottensors/ComfyUI-ODE and memmaptensor/ComfyUI-RK-Sampler
(fetched by you, never committed; they need torchdiffeq and torchode) and runs them beside ours at
their READMEs' recommended settings and over a tolerance sweep. The README says which commits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:  # the pack's cores without ComfyUI's entry point
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg

from flowanime.bench.gmm import GaussianMixture, reference_solution, rms_error  # noqa: E402
from flowanime.samplers.k_sampler import SamplerConfig  # noqa: E402


class Progress:
    """One progress bar per family of runs on stderr (tqdm, which ComfyUI installs) when stderr is a
    terminal; otherwise one line per family when it is done, so logs stay readable."""

    def __init__(self, family: str, total: int):
        self.family, self.total, self.done, self.start = family, total, 0, time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=f"{family:22}", unit="run", file=sys.stderr, mininterval=0.5)
            except ImportError:
                pass

    def step(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        print(f"[bench] {self.family}: {self.done} runs in {time.perf_counter() - self.start:.0f} s", file=sys.stderr)


def run_family(family, jobs):
    """jobs: (row label tuple, thunk returning (calls, error)). Returns the rows, with a progress bar."""
    progress, rows = Progress(family, len(jobs)), []
    for label, thunk in jobs:
        result = thunk()
        if result is not None:
            rows.append((*label, *result))
        progress.step()
    progress.close()
    return rows


def make_sampler_function(config):
    """What the KSampler entries and the SAMPLER node hand ComfyUI (imports ComfyUI when called)."""
    from flowanime.nodes.sampler_nodes import comfy_sampler_function

    return comfy_sampler_function(config)


def ksampler_entries():
    """The pack's entries in KSampler's sampler list and their default settings."""
    from flowanime.nodes.sampler_nodes import KSAMPLER_ENTRIES

    return KSAMPLER_ENTRIES


# Settings are spaced alike for everyone, so that "calls to reach an error" is resolved equally
# finely: step counts one apart up to 24 (about 4-30 % apart), tolerances a quarter decade apart
# (each about 10-30 % more calls than the last).
BUILTIN_STEPS = [*range(3, 25), 28, 32, 40, 48, 64, 96, 128]
QUARTER_DECADES = [0.0 - 0.25 * i for i in range(0, 17)]  # 0 .. -4 (0.0 - : no "-0" label)
BUILTINS = ["euler", "heun", "dpmpp_2m", "uni_pc", "deis", "ipndm", "res_multistep", "lms", "gradient_estimation"]
DPM_ADAPTIVE_TOLS = [(t, t - 0.5) for t in QUARTER_DECADES if t <= -1.0]  # log10 rtol, atol
OUR_TOLS = [*QUARTER_DECADES, -4.5, -5.0]  # log10 rtol; atol one decade lower
PACK_TOLS = [t for t in QUARTER_DECADES if t <= -1.0]
ERROR_LEVELS = [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]


def find_comfyui():
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "comfy" / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "samplers.py").is_file():
            return Path(candidate)
    return None


def import_comfy(path):
    sys.path.insert(0, str(path))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_sampling
    import comfy.samplers

    class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    ms = FlowSampling()
    ms.set_parameters(shift=3.0)
    return comfy.samplers, ms


class CountingModel:
    """The denoiser as KSAMPLER hands it to a sampler function, counting batched calls."""

    def __init__(self, gmm, model_sampling, call_seconds=0.0, busy=False):
        self.gmm, self.calls, self.call_seconds, self.busy = gmm, 0, call_seconds, busy
        self.inner_model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=model_sampling))
        self._work = torch.randn(256, 256) if busy else None

    def __call__(self, x, sigma, **kwargs):
        self.calls += 1
        if self.call_seconds and self.busy:  # a CPU model: torch work on the same threads for the call time
            end = time.perf_counter() + self.call_seconds
            while time.perf_counter() < end:
                self._work = torch.tanh(self._work @ self._work)
        elif self.call_seconds:  # idle while the model runs elsewhere, as on a GPU
            time.sleep(self.call_seconds)
        return self.gmm.denoise(x, sigma)


class TimedModel(CountingModel):
    def __init__(self, gmm, model_sampling, call_seconds, busy=False):
        super().__init__(gmm, model_sampling, call_seconds, busy)
        self.seconds = 0.0

    def __call__(self, x, sigma, **kwargs):
        start = time.perf_counter()
        out = super().__call__(x, sigma, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


def run(sampler_fn, gmm, ms, noise, sigmas, **options):
    """options: what KSAMPLER.sample passes on as **extra_options (dpm_adaptive's rtol and atol)."""
    model = CountingModel(gmm, ms)
    out = sampler_fn(model, noise.clone(), sigmas, extra_args={}, callback=None, disable=True, **options)
    return out, model.calls


def benchmark(batch, quick=False, competitors=(), smoke=False):
    comfy_path = find_comfyui()
    if comfy_path is None:
        sys.exit("bench needs a ComfyUI checkout for its built-in samplers and schedules: set COMFYUI_PATH")
    comfy_samplers, ms = import_comfy(comfy_path)
    # --smoke: a small mixture and a few settings, to check the script end to end (tests run it)
    shape, components = ((4, 8, 8), 4) if smoke else ((16, 32, 32), 16)
    gmm = GaussianMixture.latent_like(shape=shape, components=components, seed=0)
    noise = gmm.sample_noise(batch, seed=1)
    t0 = time.perf_counter()
    reference = reference_solution(gmm, noise)
    print(f"reference: scipy DOP853 rtol=atol=1e-10, float64, {batch} images of {gmm.shape} "
          f"({time.perf_counter() - t0:.1f} s)\n")

    steps_list = BUILTIN_STEPS[::3] if quick else BUILTIN_STEPS
    schedulers = list(comfy_samplers.SCHEDULER_NAMES)  # every built-in gets its best of all of ComfyUI's
    builtins, our_tols, dpm_tols = BUILTINS, OUR_TOLS[::2] if quick else OUR_TOLS, DPM_ADAPTIVE_TOLS[::2] if quick else DPM_ADAPTIVE_TOLS
    if smoke:
        steps_list, schedulers, builtins, our_tols, dpm_tols = [4, 8], ["simple", "karras"], BUILTINS[:3], [-1.0, -3.0], [(-2.0, -2.5)]

    def measured(fn, sigmas, **options):
        def thunk():
            out, calls = run(fn, gmm, ms, noise, sigmas, **options)
            return calls, rms_error(out, reference)
        return thunk

    jobs = []
    for name in builtins:
        fn = comfy_samplers.sampler_object(name).sampler_function
        for scheduler in schedulers:
            for steps in steps_list:
                sigmas = comfy_samplers.calculate_sigmas(ms, scheduler, steps)
                jobs.append((("ComfyUI", f"{name} / {scheduler}", f"{steps} steps"), measured(fn, sigmas)))
    for scheduler in ("simple", "karras", "exponential"):  # dpm_adaptive stops at sigmas[-2]: karras and exponential put it at sigma_min
        for rtol, atol in dpm_tols:
            ks = comfy_samplers.ksampler("dpm_adaptive", {"rtol": 10**rtol, "atol": 10**atol})
            jobs.append((("ComfyUI", f"dpm_adaptive / {scheduler}", f"rtol 1e{rtol:g} atol 1e{atol:g}"),
                         measured(ks.sampler_function, comfy_samplers.calculate_sigmas(ms, scheduler, 20), **ks.extra_options)))
    rows = run_family("ComfyUI built-ins", jobs)

    sigmas20 = comfy_samplers.calculate_sigmas(ms, "simple", 20)
    jobs = []
    for method in ("dopri5", "bosh3", "heun_euler", "fehlberg2", "adams_pc"):
        for form in ("data", "velocity"):
            if form == "velocity" and method not in ("dopri5", "bosh3"):
                continue
            for tol in our_tols:
                cfg = SamplerConfig(method, tol, tol - 1, max_model_calls=5000, ode_form=form)
                label = method if form == "data" else f"{method} (velocity form)"
                jobs.append((("FlowAnime", label, f"log10 rtol {tol:g}"), measured(make_sampler_function(cfg), sigmas20)))
    rows += run_family("FlowAnime adaptive", jobs)
    jobs = []
    for method in ("euler", "heun", "ralston3", "rk4"):
        tab_stages = {"euler": 1, "heun": 2, "ralston3": 3, "rk4": 4}[method]
        for scheduler in schedulers:  # the same schedules the built-ins get
            for steps in steps_list:
                if steps * tab_stages > 130:
                    continue
                sigmas = comfy_samplers.calculate_sigmas(ms, scheduler, steps)
                jobs.append((("FlowAnime", f"{method} (fixed) / {scheduler}", f"{steps} steps"),
                             measured(make_sampler_function(SamplerConfig(method)), sigmas)))
    rows += run_family("FlowAnime fixed-step", jobs)
    # Where each KSampler entry lands with its own defaults (the same schedule: only its end points count)
    jobs = [(("KSampler entry", name, f"log10 rtol {cfg.log10_rtol:g}, atol {cfg.log10_atol:g}"),
             measured(make_sampler_function(cfg), sigmas20)) for name, cfg in ksampler_entries().items()]
    entries = run_family("KSampler entries", jobs)
    if competitors:
        rows += competitor_rows(competitors, gmm, ms, noise, reference, sigmas20)
    return rows, entries, comfy_samplers, ms


def load_pack(path: Path):
    """Import a custom-node pack as ComfyUI's loader does: a package named after its folder."""
    import importlib.util

    name = "competitor_" + path.name.replace("-", "_").replace("+", "_")
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def competitor_rows(paths, gmm, ms, noise, reference, sigmas):
    rows = []
    for path in paths:
        pack = load_pack(Path(path))
        nodes_mod = sys.modules.get(pack.__name__ + ".nodes.nodes_ode") or sys.modules.get(pack.__name__ + ".nodes.nodes_rk_sampler")
        jobs = []
        if hasattr(nodes_mod, "ODESampler"):  # ComfyUI-ODE: torchdiffeq, one image at a time
            runs = [("bosh3", -2.5, -3.5, 30, "README default"), ("dopri5", -2.0, -3.0, 30, "README"),
                    ("fehlberg2", -4.0, -6.0, 30, "README"), ("adaptive_heun", -2.5, -3.5, 30, "README")]
            runs += [("bosh3", t, t - 1, 500, "sweep") for t in PACK_TOLS]
            for solver, rt, at, max_steps, why in runs:
                def thunk(solver=solver, rt=rt, at=at, max_steps=max_steps):
                    try:
                        out, calls = run(nodes_mod.ODESampler(solver, 10**rt, 10**at, max_steps), gmm, ms, noise, sigmas)
                    except AssertionError as e:  # torchdiffeq: max_num_steps exceeded
                        print(f"ComfyUI-ODE {solver} rtol 1e{rt:g}: failed ({e})")
                        return None
                    # it solves a batch one image at a time, so its calls per image are calls / batch
                    return calls // noise.shape[0], rms_error(out, reference)
                jobs.append((("ODE pack", f"ODE {solver}", f"rtol 1e{rt:g} ({why})"), thunk))
            rows += run_family("ComfyUI-ODE", jobs)
        elif hasattr(nodes_mod, "RungeKuttaSamplerImpl"):  # ComfyUI-RK-Sampler: torchode, CPU float64
            required = nodes_mod.RungeKuttaSampler.INPUT_TYPES()["required"]
            defaults = {k: v[1]["default"] for k, v in required.items()}
            for method in ("ae_bosh3", "ae_dopri5"):
                for rt in PACK_TOLS:
                    kwargs = {**defaults, "method": method, "log_relative_tolerance": rt, "log_absolute_tolerance": rt - 1}

                    def thunk(kwargs=kwargs):
                        out, calls = run(nodes_mod.RungeKuttaSamplerImpl(**kwargs), gmm, ms, noise, sigmas)
                        return calls, rms_error(out, reference)
                    why = " (README default)" if rt == -2.5 else ""
                    jobs.append((("RK pack", f"RKS {method}", f"rtol 1e{rt:g}{why}"), thunk))
            rows += run_family("ComfyUI-RK-Sampler", jobs)
        else:
            print(f"{path}: not ComfyUI-ODE or ComfyUI-RK-Sampler, skipped")
    return rows


def calls_to_reach(rows, level, origin=None, solver=None):
    calls = [r[3] for r in rows if r[4] <= level and (origin is None or r[0] == origin) and (solver is None or r[1] == solver)]
    return min(calls) if calls else None


def print_tables(rows):
    print(f"{'':9} {'sampler':28} {'setting':30} {'calls/image':>11} {'RMS error':>10}")
    for origin, solver, setting, calls, err in rows:
        print(f"{origin:9} {solver:28} {setting:30} {calls:11d} {err:10.2e}")

    print("\nModel calls per image to reach each error level (fewest over the settings tried):\n")
    others = [o for o in dict.fromkeys(r[0] for r in rows) if o != "FlowAnime"]
    header = f"{'error <=':>9} | {'FlowAnime best':>24} | " + " | ".join(f"{'best ' + o:>28}" for o in others) + " | ratio"
    print(header)
    print("-" * len(header))
    fmt = lambda n, name: f"{n} ({name})" if n else "not reached"  # noqa: E731
    for level in ERROR_LEVELS:
        ours = calls_to_reach(rows, level, "FlowAnime")
        cells, best = [], None
        for origin in others:
            n = calls_to_reach(rows, level, origin)
            name = next((r[1] for r in rows if r[0] == origin and r[3] == n and r[4] <= level), "")
            cells.append(f"{fmt(n, name):>28}")
            if n is not None and (best is None or n < best):
                best = n
        our_name = next((r[1] for r in rows if r[0] == "FlowAnime" and r[3] == ours and r[4] <= level), "")
        ratio = f"{ours / best:.2f}" if ours and best else "-"
        print(f"{level:9.0e} | {fmt(ours, our_name):>24} | " + " | ".join(cells) + f" | {ratio}")


def print_entries(entries):
    print("\nKSampler entries at their defaults (the sampler list's flowanime_*):\n")
    for _origin, name, setting, calls, err in entries:
        print(f"  {name:20} {setting:28} {calls:5d} calls/image  RMS error {err:.2e}")


def measure_overhead(comfy_samplers, ms, call_ms=50.0):
    """Wall time outside the model, per model call, for an SD3 1024x1024 latent (16x128x128).

    Each model call is timed inside the same run and subtracted, after a warm-up solve; the best of
    three runs is shown, as timeit does, since other load on the machine only adds. Two stand-ins
    for the model: one that sleeps (the CPU idles while the model runs elsewhere, as on a GPU; here
    the idle thread pool must wake up again for the solver's first tensor operations, which a GPU
    would run as kernels instead), and one that computes on the CPU's threads (a CPU model)."""
    gmm = GaussianMixture.single(torch.zeros(16, 128, 128), 0.5)
    noise = torch.randn(1, 16, 128, 128, generator=torch.Generator().manual_seed(0))
    sigmas = comfy_samplers.calculate_sigmas(ms, "simple", 20)
    print(f"\nSolver overhead per model call (latent 1x16x128x128 = SD3 at 1024x1024, on this machine's CPU, "
          f"{torch.get_num_threads()} threads; model = {call_ms:g} ms + exact denoiser):\n")
    print(f"{'method':10} {'model':>13} {'calls':>6} {'wall s':>8} {'in model s':>11} {'overhead/call ms':>17} "
          f"{'% of wall':>10}")
    progress = Progress("solver overhead", 3 * 2 * 3)
    for method in ("dopri5", "bosh3", "adams_pc"):
        fn = make_sampler_function(SamplerConfig(method))
        fn(CountingModel(gmm, ms), noise.clone(), sigmas, extra_args={}, callback=None, disable=True)  # warm-up
        for busy in (False, True):
            runs = []
            for _ in range(3):
                model = TimedModel(gmm, ms, call_ms / 1000, busy=busy)
                start = time.perf_counter()
                fn(model, noise.clone(), sigmas, extra_args={}, callback=None, disable=True)
                wall = time.perf_counter() - start
                runs.append((wall - model.seconds, wall, model))
                progress.step()
            outside, wall, model = min(runs, key=lambda r: r[0])
            kind = "CPU compute" if busy else "sleep (GPU)"
            print(f"{method:10} {kind:>13} {model.calls:6d} {wall:8.2f} {model.seconds:11.2f} "
                  f"{outside / model.calls * 1000:17.3f} {100 * outside / wall:9.2f}%")
    progress.close()


# The plot: one colour per family, a distinct line style and marker per method within it.
FAMILY_COLOURS = {"FlowAnime adaptive": "tab:blue", "FlowAnime fixed-step": "tab:green", "ComfyUI built-in": "tab:orange",
                  "ComfyUI-ODE": "tab:red", "ComfyUI-RK-Sampler": "tab:purple"}
LINESTYLES = ["-", "--", "-.", ":", (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (6, 2, 1, 2)), (0, (2, 1)),
              (0, (10, 3, 2, 3))]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "<", ">", "h"]


def family_of(origin: str, method: str) -> str:
    if origin == "FlowAnime":
        return "FlowAnime fixed-step" if "(fixed)" in method else "FlowAnime adaptive"
    return {"ComfyUI": "ComfyUI built-in", "ODE pack": "ComfyUI-ODE", "RK pack": "ComfyUI-RK-Sampler"}.get(origin, origin)


def plot(rows, entries, path: Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot)")
        return
    fig, ax = plt.subplots(figsize=(11, 6.5))
    # One line per method: its best error at each call count over schedulers and settings (the lower
    # envelope), so nine schedules per built-in stay readable.
    methods = {}  # method -> family, in the order the benchmark ran them
    for origin, solver, *_ in rows:
        methods.setdefault(solver.split(" / ")[0], family_of(origin, solver))
    index_in_family = {}
    for method, family in methods.items():
        i = index_in_family[family] = index_in_family.get(family, -1) + 1
        pts = sorted((r[3], r[4]) for r in rows if r[1].split(" / ")[0] == method)
        envelope, best = [], float("inf")
        for calls, err in pts:
            if err < best:
                envelope.append((calls, err))
                best = err
        ours = family.startswith("FlowAnime")
        ax.loglog([p[0] for p in envelope], [p[1] for p in envelope], color=FAMILY_COLOURS.get(family, "black"),
                  linestyle=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)],
                  label=f"{family}: {method}", linewidth=2 if ours else 1.2, markersize=4, alpha=0.95 if ours else 0.8)
    for level in ERROR_LEVELS:  # the levels of the README's table
        ax.axhline(level, color="0.45", linewidth=0.7, linestyle=(0, (2, 3)), zorder=0)
        ax.annotate(f"{level:.0e}", xy=(1.0, level), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7, color="0.3")
    for _origin, name, _setting, calls, err in entries:  # where the KSampler entries' defaults land
        ax.plot([calls], [err], marker="*", markersize=15, color="gold", markeredgecolor="black", linestyle="none",
                zorder=5, label=f"KSampler {name} (default)" if name == entries[0][1] else None)
        ax.annotate(name, xy=(calls, err), xytext=(6, -10), textcoords="offset points", fontsize=7, zorder=6)
    ax.set_xlabel("model calls per image")
    ax.set_ylabel("RMS error against the reference")
    ax.set_title("Gaussian-mixture flow, SD3 shift 3: best error per model-call count (lower envelope over settings)\n"
                 "dotted lines: the six error levels of the table; stars: the KSampler entries at their defaults",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if entries:  # one legend entry for all stars
        labels = [("KSampler entries at their defaults" if lab.startswith("KSampler ") else lab) for lab in labels]
    ax.legend(handles, labels, fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.06, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"\nplot: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=PACK_ROOT / "bench" / "out")
    parser.add_argument("--quick", action="store_true", help="fewer settings")
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="a small problem, a few settings, no overhead timing (seconds); plot: samplers-smoke.png")
    parser.add_argument("--competitors", nargs="*", default=[], type=Path,
                        help="checkouts of ComfyUI-ODE / ComfyUI-RK-Sampler to run beside ours")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    rows, entries, comfy_samplers, ms = benchmark(args.batch, args.quick, args.competitors, args.smoke)
    print_tables(rows)
    print_entries(entries)
    if not (args.no_overhead or args.smoke):
        measure_overhead(comfy_samplers, ms)
    # the smoke and quick runs never overwrite the full run's plot
    plot(rows, entries, args.out / ("samplers-smoke.png" if args.smoke else "samplers-quick.png" if args.quick else "samplers.png"))
    print(f"\nbenchmark took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
