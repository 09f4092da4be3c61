"""Benchmark: model calls per image against error, for FlowAnime's ODE samplers and every peer.

Each problem (bench/problems.py) gives a denoiser D(x, sigma) as KSAMPLER's model gives it, its
noise and a float64 reference (scipy DOP853 at 1e-10): gmm-narrow (the mixture the pack was tuned
on), gmm-wide (a mixture that is not ours) and mmdit-digits (a small network of ComfyUI's own MMDiT
class, trained by bench/train_mmdit_problem.py). Every sampler runs through the callable ComfyUI's
KSAMPLER runs, on a batch of images, on sigmas from ComfyUI's schedulers for SD3 shift 3. Prints,
per problem, every run, the table of model calls per image at each error level (FlowAnime's best
against the best of each peer family), where the KSampler entries land, and the solver's own
overhead per model call; writes the summary as JSON and markdown and a plot, one panel per problem.

    python bench/bench_samplers.py [--problems NAME ...] [--batch 4] [--out bench/out] [--quick]
        [--competitors DIR ...] [--newer-comfy-sampling FILE] [--amortise-images 32]

A progress bar per family of samplers goes to stderr on a terminal (a summary line per family
otherwise). The full run writes bench/out/samplers.png and summary.json / summary.md; --quick (every
third setting) and --smoke (small mixtures, a few settings, no overhead timing: about a minute)
write samplers-quick.* and samplers-smoke.*, so they never replace the full run's files.

--competitors takes checkouts of redhottensors/ComfyUI-ODE, memmaptensor/ComfyUI-RK-Sampler and
ClownsharkBatwing/RES4LYF (fetched by you, never committed; see the README for commits and the
packages they need) and runs them beside ours. --newer-comfy-sampling takes a copy of a newer
ComfyUI's comfy/k_diffusion/sampling.py (saved by you) and runs its samplers 0.3.64 lacks.
"""

from __future__ import annotations

import argparse
import json
import math
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

from flowanime.bench import problems as bench_problems  # noqa: E402
from flowanime.bench.gmm import GaussianMixture, rms_error  # noqa: E402
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
# (each about 10-30 % more calls than the last). No fixed-step run spends more than MAX_CALLS.
BUILTIN_STEPS = [*range(3, 25), 28, 32, 40, 48, 64, 96, 128]
MAX_CALLS = 260
QUARTER_DECADES = [0.0 - 0.25 * i for i in range(0, 17)]  # 0 .. -4 (0.0 - : no "-0" label)
DPM_ADAPTIVE_TOLS = [(t, t - 0.5) for t in QUARTER_DECADES if t <= -1.0]  # log10 rtol, atol
OUR_TOLS = [*QUARTER_DECADES, -4.5, -5.0]  # log10 rtol; atol one decade lower
PACK_TOLS = [t for t in QUARTER_DECADES if t <= -1.0]
ERROR_LEVELS = [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
CALIBRATED_STEPS = [*range(3, 17), 20, 24]


def builtin_samplers(comfy_path_samplers):
    """(label, ComfyUI sampler name, extra options as the ComfyUI node that makes it passes them,
    model calls per step). The SDE samplers run as ODEs (eta 0), as their nodes allow."""
    from comfy.k_diffusion import sa_solver

    ode_sa = sa_solver.get_tau_interval_func(0.0, 0.0, eta=0.0)  # SamplerSASolver with eta 0
    return [
        ("euler", "euler", {}, 1), ("heun", "heun", {}, 2), ("dpmpp_2m", "dpmpp_2m", {}, 1),
        ("dpmpp_3m_sde (eta 0)", "dpmpp_3m_sde", {"eta": 0.0, "s_noise": 0.0}, 1),  # SamplerDPMPP_3M_SDE
        ("uni_pc", "uni_pc", {}, 1), ("uni_pc_bh2", "uni_pc_bh2", {}, 1), ("deis", "deis", {}, 1),
        ("ipndm", "ipndm", {}, 1), ("ipndm_v", "ipndm_v", {}, 1), ("res_multistep", "res_multistep", {}, 1),
        ("lms", "lms", {}, 1), ("gradient_estimation", "gradient_estimation", {}, 1),
        ("seeds_2 (eta 0)", "seeds_2", {"eta": 0.0, "s_noise": 0.0}, 2),
        ("seeds_3 (eta 0)", "seeds_3", {"eta": 0.0, "s_noise": 0.0}, 3),
        ("sa_solver (eta 0)", "sa_solver", {"tau_func": ode_sa}, 1),
    ]


def find_comfyui():
    for candidate in (os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent, Path.home() / "comfy" / "ComfyUI"):
        if candidate and (Path(candidate) / "comfy" / "samplers.py").is_file():
            return Path(candidate)
    return None


def import_comfy(path):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_sampling
    import comfy.samplers

    class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    ms = FlowSampling()
    ms.set_parameters(shift=bench_problems.SHIFT)
    return comfy.samplers, ms


class CountingModel:
    """The denoiser as KSAMPLER hands it to a sampler function, counting batched calls. Its
    inner_model carries what samplers read off ComfyUI's model wrapper: the model sampling (by both
    paths), the model patcher's get_model_object, and for RES4LYF conds, cfg and a diffusion_model."""

    def __init__(self, denoise, model_sampling, call_seconds=0.0, busy=False):
        self.denoise, self.calls, self.call_seconds, self.busy = denoise, 0, call_seconds, busy
        inner = SimpleNamespace(model_sampling=model_sampling, device=torch.device("cpu"),
                                diffusion_model=torch.nn.Module(), model_config=None)
        patcher = SimpleNamespace(model=inner, get_model_object=lambda name: getattr(inner, name),
                                  model_options={"transformer_options": {}})
        self.inner_model = SimpleNamespace(inner_model=inner, model_patcher=patcher, conds={}, cfg=1.0)
        self._work = torch.randn(256, 256) if busy else None

    def __call__(self, x, sigma, **kwargs):
        self.calls += 1
        if self.call_seconds and self.busy:  # a CPU model: torch work on the same threads for the call time
            end = time.perf_counter() + self.call_seconds
            while time.perf_counter() < end:
                self._work = torch.tanh(self._work @ self._work)
        elif self.call_seconds:  # idle while the model runs elsewhere, as on a GPU
            time.sleep(self.call_seconds)
        return self.denoise(x, sigma)


class TimedModel(CountingModel):
    def __init__(self, denoise, model_sampling, call_seconds, busy=False):
        super().__init__(denoise, model_sampling, call_seconds, busy)
        self.seconds = 0.0

    def __call__(self, x, sigma, **kwargs):
        start = time.perf_counter()
        out = super().__call__(x, sigma, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


def run(sampler_fn, denoise, ms, noise, sigmas, extra_args=None, **options):
    """options: what KSAMPLER.sample passes on as **extra_options (dpm_adaptive's rtol and atol)."""
    model = CountingModel(denoise, ms)
    out = sampler_fn(model, noise.clone(), sigmas, extra_args=extra_args or {}, callback=None, disable=True, **options)
    return out, model.calls


class Context(SimpleNamespace):
    """One problem's run: problem, ms, noise, reference, comfy_samplers, schedulers, steps_list, ..."""

    def measured(self, fn, sigmas, extra_args=None, **options):
        def thunk():
            out, calls = run(fn, self.problem.denoise, self.ms, self.noise, sigmas, extra_args, **options)
            return calls, rms_error(out, self.reference)
        return thunk

    def sigmas(self, scheduler, steps):
        return self.comfy_samplers.calculate_sigmas(self.ms, scheduler, steps)


def fixed_step_jobs(ctx, origin, label, fn, stages, schedulers, extra_args=None, **options):
    jobs = []
    for scheduler in schedulers:
        for steps in ctx.steps_list:
            if steps * stages > MAX_CALLS:
                continue
            jobs.append(((origin, f"{label} / {scheduler}", f"{steps} steps"),
                         ctx.measured(fn, ctx.sigmas(scheduler, steps), extra_args, **options)))
    return jobs


def builtin_rows(ctx):
    cs = ctx.comfy_samplers
    samplers = builtin_samplers(cs)
    if ctx.smoke:
        samplers = [s for s in samplers if s[0] in ("euler", "heun", "dpmpp_2m", "uni_pc", "seeds_2 (eta 0)", "sa_solver (eta 0)")]
    jobs = []
    for label, name, options, stages in samplers:
        # sampler_object, as KSampler picks a sampler by name (uni_pc is not a k-diffusion function)
        fn = (cs.ksampler(name, options) if options else cs.sampler_object(name)).sampler_function
        jobs += fixed_step_jobs(ctx, "ComfyUI", label, fn, stages, ctx.schedulers, **options)
    for scheduler in ("simple", "karras", "exponential"):  # dpm_adaptive stops at sigmas[-2]: karras and exponential put it at sigma_min
        for rtol, atol in ctx.dpm_tols:
            ks = cs.ksampler("dpm_adaptive", {"rtol": 10**rtol, "atol": 10**atol})
            jobs.append((("ComfyUI", f"dpm_adaptive / {scheduler}", f"rtol 1e{rtol:g} atol 1e{atol:g}"),
                         ctx.measured(ks.sampler_function, ctx.sigmas(scheduler, 20), **ks.extra_options)))
    return run_family("ComfyUI built-ins", jobs)


# Samplers of a newer ComfyUI that 0.3.64 lacks, with their model calls per step. exp_heun_2_x0 is
# seeds_2 at eta 0, r = 1, solver_type phi_2 (comfyanonymous/ComfyUI@02159d8, k_diffusion/sampling.py).
NEWER_SAMPLERS = {"exp_heun_2_x0": 2}


def load_newer_sampling(path: Path):
    """A newer ComfyUI's comfy/k_diffusion/sampling.py, saved by the user, loaded beside 0.3.64's as
    comfy.k_diffusion.<name> (its relative imports take 0.3.64's utils, deis and sa_solver). The two
    names it imports that 0.3.64 lacks are lent for the import only: comfy.utils.model_trange (tqdm's
    trange) and an empty comfy.memory_management module."""
    import importlib.util

    import comfy.k_diffusion
    import comfy.utils
    from tqdm.auto import trange

    lent_trange = not hasattr(comfy.utils, "model_trange")
    if lent_trange:
        comfy.utils.model_trange = trange
    lent_mm = "comfy.memory_management" not in sys.modules and importlib.util.find_spec("comfy.memory_management") is None
    if lent_mm:
        sys.modules["comfy.memory_management"] = types.ModuleType("comfy.memory_management")
    name = "comfy.k_diffusion.flowanime_bench_newer_sampling"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        if lent_trange:
            del comfy.utils.model_trange
        if lent_mm:
            del sys.modules["comfy.memory_management"]
    missing = [n for n in NEWER_SAMPLERS if not hasattr(module, f"sample_{n}")]
    if missing:
        print(f"[bench] {path}: no {', '.join(missing)} in it (an older sampling.py?)")
    return module


def newer_rows(ctx):
    jobs = []
    for name, stages in NEWER_SAMPLERS.items():
        fn = getattr(ctx.newer_sampling, f"sample_{name}", None)
        if fn is not None:
            jobs += fixed_step_jobs(ctx, "ComfyUI newer", name, fn, stages, ctx.schedulers)
    return run_family("ComfyUI newer samplers", jobs)


def flowanime_rows(ctx):
    sigmas20 = ctx.sigmas("simple", 20)
    jobs = []
    for method in ("dopri5", "bosh3", "heun_euler", "fehlberg2", "adams_pc", "flow_adams_pc"):
        for form in ("data", "velocity"):
            if form == "velocity" and method not in ("dopri5", "bosh3"):
                continue
            for tol in ctx.our_tols:
                cfg = SamplerConfig(method, tol, tol - 1, max_model_calls=5000, ode_form=form)
                label = method if form == "data" else f"{method} (velocity form)"
                jobs.append((("FlowAnime", label, f"log10 rtol {tol:g}"), ctx.measured(make_sampler_function(cfg), sigmas20)))
    rows = run_family("FlowAnime adaptive", jobs)
    jobs = []
    for method, stages, order in (("euler", 1, None), ("heun", 2, None), ("ralston3", 3, None), ("rk4", 4, None),
                                  ("exp_multistep", 1, None), ("flow_multistep", 1, None), ("flow_multistep", 1, 3),
                                  ("exp_singlestep", 3, None), ("exp_singlestep", 2, 2),
                                  ("exp_multistep_staged_end", 1, None), ("exp_multistep_staged_end", 1, 2)):
        # the same schedules the built-ins get; order None: the method's default
        label = f"{method} (fixed)" if order is None else f"{method} order {order} (fixed)"
        jobs += fixed_step_jobs(ctx, "FlowAnime", label, make_sampler_function(SamplerConfig(method, order=order)),
                                stages, ctx.schedulers)
    rows += run_family("FlowAnime fixed-step", jobs)
    return rows


def entry_rows(ctx):
    """Where each KSampler entry lands with its own defaults (the same schedule: only its end points count)."""
    sigmas20 = ctx.sigmas("simple", 20)
    jobs = [(("KSampler entry", name, f"log10 rtol {cfg.log10_rtol:g}, atol {cfg.log10_atol:g}"),
             ctx.measured(make_sampler_function(cfg), sigmas20)) for name, cfg in ksampler_entries().items()
            if cfg.adaptive]
    # a fixed-step entry follows the scheduler: where it lands on the one the README recommends
    jobs += [(("KSampler entry", name, f"beta, {steps} steps"), ctx.measured(make_sampler_function(cfg),
                                                                           ctx.sigmas("beta", steps)))
             for name, cfg in ksampler_entries().items() if not cfg.adaptive for steps in (12, 20)]
    return run_family("KSampler entries", jobs)


# ---- FlowAnime calibrated: the lead's schedule calibration (samplers/calibrate.py) -------------------
# Built only where flowanime.samplers.calibrate imports and SamplerConfig knows "exp_multistep".
# The calibration solves on the problem's calibration noise (never the evaluation noise); each row
# counts its sampling calls plus the calibration's calls spread over --amortise-images images.
def calibrated_rows(ctx):
    try:
        from flowanime.samplers.calibrate import calibrate_schedule
    except ImportError as e:
        print(f"[bench] FlowAnime calibrated: skipped (flowanime.samplers.calibrate does not import: {e})")
        return []
    try:
        fn = make_sampler_function(SamplerConfig("exp_multistep"))
    except ValueError as e:
        print(f"[bench] FlowAnime calibrated: skipped (no exp_multistep method: {e})")
        return []
    calibration_noise = ctx.problem.calibration_noise(1)  # the node's default: one draw
    sigma_max = float(ctx.ms.sigma_max)
    steps_list = [4, 8] if ctx.smoke else CALIBRATED_STEPS

    def job(steps):
        def thunk():
            result = calibrate_schedule(ctx.problem.denoise, calibration_noise, sigma_max, steps, order=3)
            out, calls = run(fn, ctx.problem.denoise, ctx.ms, ctx.noise, result.sigmas)
            # the cost in single-image model evaluations (calls x draws), spread over the images
            ctx.calibration_costs.append((steps, result.image_evaluations, result.density_power))
            return calls + result.image_evaluations / ctx.amortise, rms_error(out, ctx.reference)
        return (("FlowAnime", "exp_multistep (calibrated)", f"{steps} steps + calibration / {ctx.amortise} images"),
                thunk)

    ctx.calibration_costs = []
    rows = run_family("FlowAnime calibrated", [job(steps) for steps in steps_list])
    for steps, calls, power in ctx.calibration_costs:
        print(f"  calibration for {steps:3d} steps: {calls} single-image model evaluations, unamortised "
              f"(density power kept: {power:g})")
    return rows


# ---- Competitor packs ----------------------------------------------------------------------------
def load_pack(path: Path):
    """Import a custom-node pack as ComfyUI's loader does: a package named after its folder."""
    import importlib.util

    name = "competitor_" + path.name.replace("-", "_").replace("+", "_")
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stub_server_modules():
    """RES4LYF imports ComfyUI's server (for its web routes) and, at 022c873, comfy.nested_tensor,
    which 0.3.64 lacks. The benchmark starts no server: a PromptServer stand-in whose routes go
    nowhere, and an empty NestedTensor type where ComfyUI has none (nothing here is nested)."""
    import importlib.util

    import comfy

    if "server" not in sys.modules:
        from aiohttp import web

        server = types.ModuleType("server")

        class PromptServer:
            instance = SimpleNamespace(routes=web.RouteTableDef(), supports={"custom_nodes_from_web"},
                                       client_id=None, send_sync=lambda *a, **k: None)

        server.PromptServer = PromptServer
        sys.modules["server"] = server
    if importlib.util.find_spec("comfy.nested_tensor") is None:
        nested = types.ModuleType("comfy.nested_tensor")
        nested.NestedTensor = type("NestedTensor", (), {})
        sys.modules["comfy.nested_tensor"] = comfy.nested_tensor = nested


def load_competitors(paths):
    """(kind, module) per checkout: 'ode', 'rk' or 'res4lyf'."""
    packs = []
    for path in paths:
        path = Path(path)
        if (path / "beta" / "rk_sampler_beta.py").is_file():
            stub_server_modules()
        pack = load_pack(path)
        nodes_mod = sys.modules.get(pack.__name__ + ".nodes.nodes_ode") or sys.modules.get(pack.__name__ + ".nodes.nodes_rk_sampler")
        if "res_3m_ode" in getattr(pack, "extra_samplers", {}):
            packs.append(("res4lyf", pack))
        elif hasattr(nodes_mod, "ODESampler"):
            packs.append(("ode", nodes_mod))
        elif hasattr(nodes_mod, "RungeKuttaSamplerImpl"):
            packs.append(("rk", nodes_mod))
        else:
            print(f"{path}: not ComfyUI-ODE, ComfyUI-RK-Sampler or RES4LYF, skipped")
    return packs


# RES4LYF's registered ODE samplers (eta 0: no noise) and their model calls per step
RES4LYF_SAMPLERS = {"res_2m_ode": 1, "res_3m_ode": 1, "deis_2m_ode": 1, "deis_3m_ode": 1, "res_2s_ode": 2,
                    "res_3s_ode": 3, "res_5s_ode": 5, "res_6s_ode": 6}
RES4LYF_SCHEDULERS = ("beta57", "bong_tangent")  # the schedulers it adds to ComfyUI's list


def res4lyf_without_bongmath(rk_sampler_beta, name):
    """RES4LYF's registered <name>_ode wrapper (beta/__init__.py: sample_rk_beta with rk_type, eta 0 and
    eta_substep 0) with BONGMATH off. At eta 0 its fixed-point "bongmath" iteration leaves the result
    unchanged (measured here: at most 3e-6 apart, float32 rounding, the same errors to four digits on
    24 runs), but takes most of its time on large latents; --res4lyf-bongmath runs the wrapper as is."""
    rk_type = name.removesuffix("_ode")

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return rk_sampler_beta.sample_rk_beta(model, x, sigmas, None, extra_args, callback, disable, rk_type=rk_type,
                                              eta=0.0, eta_substep=0.0, BONGMATH=False)
    return sample


def competitor_rows(ctx):
    rows = []
    sigmas20 = ctx.sigmas("simple", 20)
    for kind, mod in ctx.competitors:
        jobs = []
        if kind == "res4lyf":  # through ComfyUI's KSAMPLER, as KSampler runs the names it registers
            names = (["res_2m_ode", "res_3m_ode", "res_2s_ode"] if ctx.smoke else
                     ["res_2m_ode", "res_3m_ode", "res_2s_ode", "res_3s_ode", "deis_3m_ode"] if ctx.quick else
                     list(RES4LYF_SAMPLERS))
            schedulers = [*ctx.schedulers, *(s for s in RES4LYF_SCHEDULERS if s in ctx.comfy_samplers.SCHEDULER_NAMES)]
            extra = {"model_options": {"transformer_options": {}}}
            rk_sampler_beta = sys.modules[mod.__name__ + ".beta.rk_sampler_beta"]
            for name in names:
                fn = ctx.comfy_samplers.ksampler(name).sampler_function  # what KSampler runs for the name
                if not ctx.res4lyf_bongmath:
                    fn = res4lyf_without_bongmath(rk_sampler_beta, name)
                jobs += fixed_step_jobs(ctx, "RES4LYF", name, fn, RES4LYF_SAMPLERS[name], schedulers, extra)
            rows += run_family("RES4LYF", jobs)
        elif kind == "ode":  # ComfyUI-ODE: torchdiffeq, one image at a time
            runs = [("bosh3", -2.5, -3.5, 30, "README default"), ("dopri5", -2.0, -3.0, 30, "README"),
                    ("fehlberg2", -4.0, -6.0, 30, "README"), ("adaptive_heun", -2.5, -3.5, 30, "README")]
            runs += [("bosh3", t, t - 1, 500, "sweep") for t in ctx.pack_tols]
            for solver, rt, at, max_steps, why in runs:
                def thunk(solver=solver, rt=rt, at=at, max_steps=max_steps):
                    try:
                        out, calls = run(mod.ODESampler(solver, 10**rt, 10**at, max_steps), ctx.problem.denoise,
                                         ctx.ms, ctx.noise, sigmas20)
                    except AssertionError as e:  # torchdiffeq: max_num_steps exceeded
                        print(f"ComfyUI-ODE {solver} rtol 1e{rt:g}: failed ({e})")
                        return None
                    # it solves a batch one image at a time, so its calls per image are calls / batch
                    return calls // ctx.noise.shape[0], rms_error(out, ctx.reference)
                jobs.append((("ODE pack", f"ODE {solver}", f"rtol 1e{rt:g} ({why})"), thunk))
            rows += run_family("ComfyUI-ODE", jobs)
        elif kind == "rk":  # ComfyUI-RK-Sampler: torchode, CPU float64
            required = mod.RungeKuttaSampler.INPUT_TYPES()["required"]
            defaults = {k: v[1]["default"] for k, v in required.items()}
            for method in ("ae_bosh3", "ae_dopri5"):
                for rt in ctx.pack_tols:
                    kwargs = {**defaults, "method": method, "log_relative_tolerance": rt, "log_absolute_tolerance": rt - 1}
                    why = " (README default)" if rt == -2.5 else ""
                    jobs.append((("RK pack", f"RKS {method}", f"rtol 1e{rt:g}{why}"),
                                 ctx.measured(mod.RungeKuttaSamplerImpl(**kwargs), sigmas20)))
            rows += run_family("ComfyUI-RK-Sampler", jobs)
    return rows


# ---- The benchmark -------------------------------------------------------------------------------
def benchmark(args):
    comfy_path = find_comfyui()
    if comfy_path is None:
        sys.exit("bench needs a ComfyUI checkout for its built-in samplers and schedules: set COMFYUI_PATH")
    comfy_samplers, ms = import_comfy(comfy_path)
    # every built-in gets its best of all of ComfyUI's own schedulers (read before a pack adds its own)
    schedulers = list(comfy_samplers.SCHEDULER_NAMES)
    competitors = load_competitors(args.competitors)
    newer = load_newer_sampling(args.newer_comfy_sampling) if args.newer_comfy_sampling else None
    results = []
    problems = bench_problems.build(bench_problems.problem_names(args), smoke=args.smoke, cache_dir=args.out / "cache",
                                    gmm_specs=args.gmm)
    for problem in problems:
        start = time.perf_counter()
        ctx = Context(problem=problem, ms=ms, comfy_samplers=comfy_samplers, batch=args.batch, smoke=args.smoke,
                      res4lyf_bongmath=args.res4lyf_bongmath, quick=args.quick,
                      amortise=args.amortise_images, competitors=competitors, newer_sampling=newer,
                      schedulers=schedulers, steps_list=BUILTIN_STEPS[::3] if args.quick else BUILTIN_STEPS,
                      our_tols=OUR_TOLS[::2] if args.quick else OUR_TOLS,
                      dpm_tols=DPM_ADAPTIVE_TOLS[::2] if args.quick else DPM_ADAPTIVE_TOLS,
                      pack_tols=PACK_TOLS[::2] if args.quick else PACK_TOLS)
        if args.smoke:  # a few settings, to check the script end to end (tests run it)
            ctx.steps_list, ctx.schedulers, ctx.our_tols, ctx.dpm_tols, ctx.pack_tols = \
                [4, 8], ["simple", "karras"], [-1.0, -3.0], [(-2.0, -2.5)], [-2.0]
        print(f"\n=== problem {problem.name}: {problem.description}; SD3 model sampling, shift {problem.shift:g} ===")
        ctx.noise = problem.noise(args.batch)
        t0 = time.perf_counter()
        ctx.reference = problem.reference(ctx.noise)
        print(f"reference: {problem.reference_note}, {args.batch} images of {problem.shape} "
              f"({time.perf_counter() - t0:.1f} s)\n")
        rows = builtin_rows(ctx)
        if newer is not None:
            rows += newer_rows(ctx)
        rows += flowanime_rows(ctx)
        rows += calibrated_rows(ctx)
        entries = entry_rows(ctx)
        rows += competitor_rows(ctx)
        seconds = time.perf_counter() - start
        print_runs(rows)
        summary = summarise(problem, rows, args)
        print_summary(summary)
        print_entries(entries)
        print(f"\n[bench] problem {problem.name} took {seconds:.0f} s")
        results.append(SimpleNamespace(problem=problem, rows=rows, entries=entries, summary=summary, seconds=seconds))
    return results, comfy_samplers, ms


# ---- Tables --------------------------------------------------------------------------------------
PEER_FAMILIES = {"ComfyUI": "ComfyUI built-ins", "ComfyUI newer": "ComfyUI newer", "RES4LYF": "RES4LYF",
                 "ODE pack": "ComfyUI-ODE", "RK pack": "ComfyUI-RK-Sampler"}


def best_at(rows, level, origins):
    """The row with the fewest calls per image (then the lowest error) among origins reaching level."""
    hits = [r for r in rows if r[0] in origins and r[4] <= level]
    return min(hits, key=lambda r: (r[3], r[4])) if hits else None


def cell(row):
    return None if row is None else {"calls": row[3], "config": f"{row[1]}, {row[2]}", "error": row[4]}


def summarise(problem, rows, args):
    peers = [o for o in PEER_FAMILIES if any(r[0] == o for r in rows)]
    levels = []
    for level in ERROR_LEVELS:
        ours = cell(best_at(rows, level, ("FlowAnime",)))
        best = {PEER_FAMILIES[o]: cell(best_at(rows, level, (o,))) for o in peers}
        reached = [c for c in best.values() if c is not None]
        best_peer = min(reached, key=lambda c: c["calls"]) if reached else None
        ratio = ours["calls"] / best_peer["calls"] if ours and best_peer else None
        levels.append({"level": level, "flowanime": ours, "peers": best, "ratio": ratio})
    return {"problem": problem.name, "description": problem.description, "reference": problem.reference_note,
            "batch": args.batch, "shift": problem.shift, "amortise_images": args.amortise_images,
            "quick": args.quick, "smoke": args.smoke, "peer_families": [PEER_FAMILIES[o] for o in peers],
            "levels": levels}


def summary_markdown(summary) -> str:
    def show(c):
        return "not reached" if c is None else f"{c['calls']:.4g} ({c['config']})"

    peers = summary["peer_families"]
    lines = [f"**{summary['problem']}**: {summary['description']}. Model calls per image to reach each RMS error "
             f"(batch {summary['batch']}; calibration calls amortised over {summary['amortise_images']} images):", "",
             "| error ≤ | FlowAnime best | " + " | ".join(f"best {p}" for p in peers) + " | FlowAnime / best peer |",
             "|---" * (len(peers) + 3) + "|"]
    for lv in summary["levels"]:
        ratio = "-" if lv["ratio"] is None else f"{lv['ratio']:.2f}"
        lines.append(f"| {lv['level']:.0e} | {show(lv['flowanime'])} | "
                     + " | ".join(show(lv["peers"][p]) for p in peers) + f" | {ratio} |")
    return "\n".join(lines)


def print_runs(rows):
    print(f"\n{'':13} {'sampler':34} {'setting':40} {'calls/image':>11} {'RMS error':>10}")
    for origin, solver, setting, calls, err in rows:
        print(f"{origin:13} {solver:34} {setting:40} {calls:11g} {err:10.2e}")


def print_summary(summary):
    print(f"\nModel calls per image to reach each error level (fewest over the settings tried), "
          f"{summary['problem']}:\n")
    print(summary_markdown(summary))


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
    print(f"{'method':14} {'model':>13} {'calls':>6} {'wall s':>8} {'in model s':>11} {'overhead/call ms':>17} "
          f"{'% of wall':>10}")
    methods = ("dopri5", "bosh3", "adams_pc", "flow_adams_pc", "flow_multistep")  # the last on the 20 sigmas
    progress = Progress("solver overhead", len(methods) * 2 * 3)
    for method in methods:
        fn = make_sampler_function(SamplerConfig(method))
        fn(CountingModel(gmm.denoise, ms), noise.clone(), sigmas, extra_args={}, callback=None, disable=True)  # warm-up
        for busy in (False, True):
            runs = []
            for _ in range(3):
                model = TimedModel(gmm.denoise, ms, call_ms / 1000, busy=busy)
                start = time.perf_counter()
                fn(model, noise.clone(), sigmas, extra_args={}, callback=None, disable=True)
                wall = time.perf_counter() - start
                runs.append((wall - model.seconds, wall, model))
                progress.step()
            outside, wall, model = min(runs, key=lambda r: r[0])
            kind = "CPU compute" if busy else "sleep (GPU)"
            print(f"{method:14} {kind:>13} {model.calls:6d} {wall:8.2f} {model.seconds:11.2f} "
                  f"{outside / model.calls * 1000:17.3f} {100 * outside / wall:9.2f}%")
    progress.close()


# ---- The plot: one panel per problem; one colour per family, a line style and marker per method ----
FAMILY_COLOURS = {"FlowAnime adaptive": "tab:blue", "FlowAnime fixed-step": "tab:green",
                  "FlowAnime calibrated": "tab:cyan", "ComfyUI built-in": "tab:orange",
                  "ComfyUI newer": "tab:brown", "RES4LYF": "tab:pink", "ComfyUI-ODE": "tab:red",
                  "ComfyUI-RK-Sampler": "tab:purple"}
LINESTYLES = ["-", "--", "-.", ":", (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (6, 2, 1, 2)), (0, (2, 1)),
              (0, (10, 3, 2, 3))]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "<", ">", "h"]


def family_of(origin: str, method: str) -> str:
    if origin == "FlowAnime":
        return ("FlowAnime fixed-step" if "(fixed)" in method else "FlowAnime calibrated" if "(calibrated)" in method
                else "FlowAnime adaptive")
    return {"ComfyUI": "ComfyUI built-in", "ODE pack": "ComfyUI-ODE", "RK pack": "ComfyUI-RK-Sampler"}.get(origin, origin)


def plot_panel(ax, rows, entries, title):
    # One line per method: its best error at each call count over schedulers and settings (the lower
    # envelope), so many schedules per sampler stay readable.
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
    for level in ERROR_LEVELS:  # the levels of the table
        ax.axhline(level, color="0.45", linewidth=0.7, linestyle=(0, (2, 3)), zorder=0)
    for _origin, name, _setting, calls, err in entries:  # where the KSampler entries' defaults land
        ax.plot([calls], [err], marker="*", markersize=13, color="gold", markeredgecolor="black", linestyle="none",
                zorder=5, label="KSampler entries at their defaults" if name == entries[0][1] else None)
    ax.set_xlabel("model calls per image")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)


def plot(results, path: Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot)")
        return
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 6.5), squeeze=False)
    for ax, result in zip(axes[0], results):
        plot_panel(ax, result.rows, result.entries, result.problem.name)
    axes[0][0].set_ylabel("RMS error against the float64 reference")
    handles, labels = {}, []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.suptitle("Best error per model-call count (lower envelope over settings), SD3 shift 3; dotted: the table's "
                 "error levels; stars: the KSampler entries at their defaults", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"\nplot: {path}")


def write_summary(results, out: Path, stem: str, timings: dict):
    out.mkdir(parents=True, exist_ok=True)
    data = {"problems": [r.summary for r in results], "seconds_per_problem": timings}
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1, default=lambda v: None if isinstance(v, float)
                                                  and not math.isfinite(v) else str(v)), encoding="utf-8")
    (out / f"{stem}.md").write_text("\n\n".join(summary_markdown(r.summary) for r in results) + "\n", encoding="utf-8")
    print(f"summary: {out / (stem + '.json')} and {out / (stem + '.md')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bench_problems.add_problem_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=PACK_ROOT / "bench" / "out")
    parser.add_argument("--quick", action="store_true", help="every third step count, every second tolerance")
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="small mixtures, a few settings, no overhead timing (about a minute); files samplers-smoke.*")
    parser.add_argument("--competitors", nargs="*", default=[], type=Path,
                        help="checkouts of ComfyUI-ODE / ComfyUI-RK-Sampler / RES4LYF to run beside ours")
    parser.add_argument("--newer-comfy-sampling", type=Path, default=None, metavar="FILE",
                        help="a newer ComfyUI's comfy/k_diffusion/sampling.py: runs " + ", ".join(NEWER_SAMPLERS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine, 2 threads ran the MMDiT 50x slower)")
    parser.add_argument("--res4lyf-bongmath", action="store_true",
                        help="run RES4LYF with its BONGMATH iteration on, as its registered names do (same output "
                             "at eta 0, several times slower)")
    parser.add_argument("--amortise-images", type=int, default=32,
                        help="images a calibration's model calls are spread over in the calibrated rows")
    args = parser.parse_args()
    bench_problems.check_problem_arguments(parser, args)
    for name in ("amortise_images", "batch", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for path in args.competitors:
        if not (path / "__init__.py").is_file():
            parser.error(f"--competitors: {path} is not a ComfyUI custom-node checkout (no __init__.py there)")
    if args.newer_comfy_sampling and not args.newer_comfy_sampling.is_file():
        parser.error(f"--newer-comfy-sampling: no file {args.newer_comfy_sampling}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results, comfy_samplers, ms = benchmark(args)
    if not (args.no_overhead or args.smoke):
        measure_overhead(comfy_samplers, ms)
    # the smoke and quick runs never overwrite the full run's files
    stem = "samplers-smoke" if args.smoke else "samplers-quick" if args.quick else "samplers"
    timings = {r.problem.name: round(r.seconds) for r in results}
    print("\nseconds per problem: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    write_summary(results, args.out, stem.replace("samplers", "summary"), timings)
    plot(results, args.out / f"{stem}.png")
    print(f"\nbenchmark took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
