"""The sampler benchmark's problems: a denoiser D(x, sigma) as KSAMPLER's model gives it to a sampler
(batched; sigma a float or a per-image tensor), its noise, and a float64 tight-tolerance reference.

    gmm-narrow    the exact denoiser of bench/gmm.py's 16-component mixture, seed 0: the problem the
                  pack's samplers were tuned on (curved near sigma 0)
    gmm-wide      a mixture that is not ours: 6 components, wider component widths, wider spread,
                  other seeds (nearly straight paths)
    mmdit-digits  a trained network: ComfyUI's MMDiT class (bench/train_mmdit_problem.py), weights
                  in bench/fixtures/mmdit_patches.safetensors

Every problem is sampled on ComfyUI's SD3 model sampling with shift 3 (ModelSamplingDiscreteFlow +
CONST). Evaluation noise and calibration noise come from different seeds, so a schedule calibrated
on calibration_noise is judged on draws it never saw. Only the mmdit problem imports ComfyUI, when it
is built (its network is ComfyUI's class).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .gmm import GaussianMixture, solve_reference

SHIFT = 3.0  # SD3's shift: every problem's sigmas come from ComfyUI's schedulers for it
REFERENCE_RTOL = 1e-10  # scipy DOP853, float64, rtol = atol
CALIBRATION_SEED = 1000  # calibration noise seeds start here; evaluation seeds are all below 100
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mmdit_patches.safetensors"


@dataclass
class Problem:
    name: str
    description: str
    shape: tuple
    denoise: Callable  # D(x, sigma) -> denoised, batched, in x's dtype (float32 in the benchmark)
    denoise64: Callable  # the same in float64, for the reference
    eval_seed: int
    velocity64: Callable | None = None  # dx/dsigma in float64 when the model gives it directly
    shift: float = SHIFT
    reference_rtol: float = REFERENCE_RTOL  # rtol = atol of the reference solve (--smoke loosens it)
    _references: dict = field(default_factory=dict, repr=False)
    cache_dir: Path | None = None  # where references are kept between runs (None: memory only)
    cache_key: str = ""  # what the problem's reference depends on besides the noise

    def noise(self, batch: int, seed: int | None = None) -> torch.Tensor:
        """Evaluation noise: the benchmark's images (float32, unit variance)."""
        gen = torch.Generator().manual_seed(self.eval_seed if seed is None else seed)
        return torch.randn((batch, *self.shape), generator=gen)

    def calibration_noise(self, batch: int, seed: int = CALIBRATION_SEED) -> torch.Tensor:
        """Noise for calibrating a schedule: seeds from CALIBRATION_SEED up, never an evaluation seed."""
        if seed < CALIBRATION_SEED:
            raise ValueError(f"calibration seeds start at {CALIBRATION_SEED} (evaluation seeds are below it), got {seed}")
        return self.noise(batch, seed)

    @property
    def reference_note(self) -> str:
        return f"scipy DOP853 rtol=atol={self.reference_rtol:g}, float64, one image at a time"

    def reference(self, noise: torch.Tensor) -> torch.Tensor:
        """x(0) from each image of noise, by DOP853 at reference_rtol (1e-10) in float64; cached in
        memory and, with cache_dir, on disk keyed by the problem, its tolerance and the noise."""
        key = hashlib.sha256(noise.detach().cpu().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]
        if key in self._references:
            return self._references[key]
        path = None
        if self.cache_dir is not None:
            tag = hashlib.sha256(f"{self.name}|{self.cache_key}|{self.reference_rtol}|{key}".encode()).hexdigest()[:16]
            path = Path(self.cache_dir) / f"reference-{self.name}-{tag}.pt"
            if path.is_file():
                self._references[key] = torch.load(path)
                return self._references[key]
        with torch.no_grad():
            ref = solve_reference(self.denoise64, noise, velocity64=self.velocity64, rtol=self.reference_rtol,
                                  atol=self.reference_rtol)
        self._references[key] = ref
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(ref, path)
        return ref


def gmm_problem(name: str, description: str, gmm: GaussianMixture, eval_seed: int, cache_key: str) -> Problem:
    g64 = gmm.to(torch.float64)
    return Problem(name, description, gmm.shape, gmm.denoise, g64.denoise, eval_seed, cache_key=cache_key)


# gmm-wide's parameters, all of them (the README repeats them)
GMM_WIDE = {"shape": (16, 32, 32), "components": 6, "seed": 7, "std_range": (0.05, 0.5), "base_scale": 0.8,
            "spread": 1.0}
GMM_WIDE_NOISE_SEED = 11


def gmm_narrow(smoke: bool = False) -> Problem:
    shape, components = ((4, 8, 8), 4) if smoke else ((16, 32, 32), 16)
    gmm = GaussianMixture.latent_like(shape=shape, components=components, seed=0)
    return gmm_problem("gmm-narrow", f"{components}-component mixture, stds log-uniform in [0.01, 0.2], seed 0 "
                       f"(tuned on)", gmm, eval_seed=1, cache_key=f"{shape}|{components}|0")


def gmm_wide(smoke: bool = False) -> Problem:
    params = dict(GMM_WIDE, shape=(4, 8, 8)) if smoke else GMM_WIDE
    gmm = GaussianMixture.latent_like(**params)
    return gmm_problem("gmm-wide", f"{params['components']}-component mixture, stds log-uniform in "
                       f"{list(params['std_range'])}, means {params['base_scale']} N(0,1) + {params['spread']} N(0,1), "
                       f"seed {params['seed']}", gmm, eval_seed=GMM_WIDE_NOISE_SEED, cache_key=json.dumps(params))


class MMDiTDenoiser:
    """The trained MMDiT as an SD3 model under ComfyUI: D(x, sigma) = x - sigma * net(x, 1000 sigma)."""

    def __init__(self, net: torch.nn.Module):
        self.net = net.eval()

    def velocity(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The network's output in x's dtype; it runs in its own dtype, as ComfyUI casts a model's
        input to the model's dtype and its output back."""
        dtype = next(self.net.parameters()).dtype
        sigma = torch.as_tensor(sigma, dtype=dtype).reshape(-1).expand(x.shape[0])
        with torch.no_grad():
            return self.net(x.to(dtype), sigma * 1000).to(x.dtype)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return x - s * self.velocity(x, sigma)


def load_mmdit(path: Path = FIXTURE, train_if_missing: bool = True):
    """The fixture's network (ComfyUI's MMDiT class: imports ComfyUI) and its metadata. Trains it
    first (a few CPU minutes) if the file is missing."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .train_mmdit_problem import build_mmdit

    if not path.is_file():
        if not train_if_missing:
            raise FileNotFoundError(path)
        import subprocess
        import sys

        print(f"[bench] {path} missing: training it (bench/train_mmdit_problem.py, a few minutes)")
        subprocess.run([sys.executable, str(Path(__file__).with_name("train_mmdit_problem.py")), "--out", str(path)],
                       check=True)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    config = json.loads(metadata["config"])
    net = build_mmdit(config)
    net.load_state_dict(load_file(str(path)))
    return net, metadata


def mmdit_digits(smoke: bool = False) -> Problem:
    net, metadata = load_mmdit()
    net32 = MMDiTDenoiser(net.float())
    import copy

    net64 = MMDiTDenoiser(copy.deepcopy(net).double())
    config = json.loads(metadata["config"])
    shape = (config["in_channels"], config["input_size"], config["input_size"])
    digest = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()[:16]
    params = sum(p.numel() for p in net.parameters())
    return Problem("mmdit-digits", f"ComfyUI MMDiT ({params} parameters) trained on 16x16 patches of matplotlib's "
                   f"sample images, unconditional", shape, net32, net64, eval_seed=21, velocity64=net64.velocity,
                   cache_key=digest)


PROBLEMS = {"gmm-narrow": gmm_narrow, "gmm-wide": gmm_wide, "mmdit-digits": mmdit_digits}

# A held-out mixture from the command line (--gmm): its parameters and their allowed ranges.
GMM_SPEC_RANGES = {"components": (1, 64), "seed": (0, 2**31 - 1), "std_lo": (1e-3, 1.0), "std_hi": (1e-3, 1.0),
                   "base_scale": (0.0, 2.0), "spread": (0.0, 2.0), "noise_seed": (0, 99)}
GMM_SPEC_EXAMPLE = "components=8,seed=21,std_lo=0.02,std_hi=0.3,base_scale=0.7,spread=0.6,noise_seed=5"


def parse_gmm_spec(spec: str) -> dict:
    """`key=value,...` with every key of GMM_SPEC_RANGES (GMM_SPEC_EXAMPLE): a mixture that is none of
    the named problems, to measure on problems nobody tuned on. Raises ValueError naming the fault."""
    values = {}
    for part in spec.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in GMM_SPEC_RANGES:
            raise ValueError(f"--gmm: {part.strip()!r} is not key=value with a key of {', '.join(GMM_SPEC_RANGES)}")
        lo, hi = GMM_SPEC_RANGES[key]
        try:
            number = int(value) if isinstance(lo, int) else float(value)
        except ValueError:
            raise ValueError(f"--gmm: {key} must be a number, got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"--gmm: {key} must be in [{lo}, {hi}], got {number}")
        values[key] = number
    missing = [k for k in GMM_SPEC_RANGES if k not in values]
    if missing:
        raise ValueError(f"--gmm: missing {', '.join(missing)} (example: {GMM_SPEC_EXAMPLE})")
    if values["std_lo"] > values["std_hi"]:
        raise ValueError("--gmm: std_lo must not exceed std_hi")
    return values


def gmm_from_spec(spec: str, smoke: bool = False) -> Problem:
    v = parse_gmm_spec(spec)
    params = {"shape": (4, 8, 8) if smoke else (16, 32, 32), "components": v["components"], "seed": v["seed"],
              "std_range": (v["std_lo"], v["std_hi"]), "base_scale": v["base_scale"], "spread": v["spread"]}
    gmm = GaussianMixture.latent_like(**params)
    name = f"gmm-k{v['components']}-s{v['seed']}"
    return gmm_problem(name, f"held-out {v['components']}-component mixture, stds log-uniform in "
                       f"[{v['std_lo']:g}, {v['std_hi']:g}], means {v['base_scale']:g} N(0,1) + {v['spread']:g} N(0,1), "
                       f"seed {v['seed']}, noise seed {v['noise_seed']} (not tuned on)", gmm,
                       eval_seed=v["noise_seed"], cache_key=json.dumps(params))


def build(names, smoke: bool = False, cache_dir: Path | None = None, gmm_specs=()) -> list[Problem]:
    """--smoke: small mixtures, references at 1e-7 (the network's at 1e-5; it keeps its size).
    gmm_specs: held-out mixtures (parse_gmm_spec), after the named problems."""
    problems = []
    for name in [*names, *gmm_specs]:
        start = time.perf_counter()
        problem = PROBLEMS[name](smoke) if name in PROBLEMS else gmm_from_spec(name, smoke)
        name = problem.name
        problem.cache_dir = cache_dir
        if smoke:  # the network's reference costs about 2500 calls per image at 1e-7
            problem.reference_rtol = 1e-5 if name == "mmdit-digits" else 1e-7
        problems.append(problem)
        print(f"[bench] problem {name}: built in {time.perf_counter() - start:.1f} s")
    return problems


def add_problem_arguments(parser) -> None:
    """--problems and --gmm, as every benchmark script takes them."""
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=None,
                        help="which problems (default: all, or none when --gmm is given)")
    parser.add_argument("--gmm", nargs="+", default=[], metavar="SPEC",
                        help="held-out mixtures to measure on, each key=value,... e.g. " + GMM_SPEC_EXAMPLE)


def check_problem_arguments(parser, args) -> None:
    """Refuse a bad --gmm spec with the setting named (parser.error), before anything runs."""
    for spec in args.gmm:
        try:
            parse_gmm_spec(spec)
        except ValueError as e:
            parser.error(str(e))


def problem_names(args) -> list[str]:
    """The named problems to build: --problems, else all of them unless --gmm gives mixtures instead."""
    return args.problems if args.problems is not None else [] if args.gmm else list(PROBLEMS)
