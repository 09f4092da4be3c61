"""The schedule calibration (samplers/calibrate.py) on a ComfyUI model, and its cache.

The teacher solve runs through ComfyUI's own CFGGuider and KSAMPLER, as SamplerCustomAdvanced runs a
sampler: the model's patches, LoRAs, CFG and conditioning all apply, and a CFG pair is one call.
The result is cached as JSON under ComfyUI's user directory (flowanime/schedules/), keyed by a hash
of everything the schedule depends on: the model's weights (a sample of each tensor), its patches
(LoRA keys, strengths and a sample of their tensors), its model sampling (classes, conventions,
settings, sigma table), its options (what the closures of functions such as RescaleCFG's hold), the
conditioning tensors and ControlNets (strength, hint, step range, a sample of their weights), CFG,
the latent (shape and a hash of all its values: a retouch may change a few), the draws, the seed and
the calibration settings.

Checked against newer ComfyUI: comfy/samplers.py@311c014 (CFGGuider(model_patcher), set_conds,
set_cfg, sample(noise, latent_image, sampler, sigmas, ..., seed); KSAMPLER(sampler_function)),
comfy/sample.py (prepare_noise; fix_empty_latent_channels through latent.py), folder_paths.get_user_directory and
latent_preview.py@2d619ed (prepare_callback(model, steps) -> callback(step, x0, x, total_steps), which
moves the node's bar to step + 1 with a preview of x0 in the user's preview method).
"""

from __future__ import annotations

import dis
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import re
import time
import types
import weakref
from dataclasses import replace
from pathlib import Path

import torch

from ..samplers.calibrate import Calibration, CalibrationSettings, calibrate_schedule
from .latent import samples_as_samplers_prepare_them
from .models import require_supported_config
from .samplers import (
    MAX_HOOKS_READ,
    MAX_KEYFRAMES_READ,
    base_compute_dtype,
    conditioning_breakpoints,
    interrupt_check,
    model_precision,
    precision_name,
    sigma_floor,
)

log = logging.getLogger("FlowAnime")
CACHE_VERSION = 4  # bump when the calibration's method changes what it returns
SAMPLE_VALUES = 64  # values read from each weight tensor for the fingerprint
MAX_CLOSURE_ITEMS = 256  # items of a closure's list of ints or names (layer indices) read for the fingerprint
MAX_FINGERPRINT_DEPTH = 8  # patches -> key -> list -> (strength, adapter, ...) -> adapter -> weights -> tensor
MAX_CACHED_SCHEDULES = 2000  # the least recently used beyond this are deleted
CACHE_FILE_NAME = re.compile(r"[0-9a-f]{64}\.json")  # what cache_key names; nothing else there is touched
PARTIAL_FILE_NAME = re.compile(r"[0-9a-f]{64}\.[0-9]+\.partial")  # a write a killed process left behind
STALE_PARTIAL_S = 3600.0  # older than any write in progress


def cache_directory() -> Path:
    import folder_paths

    return Path(folder_paths.get_user_directory()) / "flowanime" / "schedules"


def _tensor_digest(t: torch.Tensor, full: bool, as_dtype: torch.dtype | None = None) -> list:
    """as_dtype: the dtype the model runs a floating-point weight in, where ComfyUI records it: the
    sample is rounded to it first, so the weight cast in place by a load hashes as before it."""
    if t.device.type == "meta":  # weights not materialised (dynamic loading): their shape only
        return [list(t.shape), str(t.dtype)]
    flat = t.detach().reshape(-1)
    if not full and flat.numel() > SAMPLE_VALUES:
        stride = flat.numel() // SAMPLE_VALUES
        flat = flat[::stride][:SAMPLE_VALUES]
    dtype = t.dtype
    if isinstance(as_dtype, torch.dtype) and as_dtype.is_floating_point and t.is_floating_point():
        flat, dtype = flat.to(as_dtype), as_dtype
    data = flat.to("cpu", torch.float32).contiguous().numpy().tobytes()
    return [list(t.shape), str(dtype), hashlib.sha256(data).hexdigest()[:16]]


def _model_dtypes(base, names) -> dict:
    """The dtype newer ComfyUI records for each weight as `<name>_comfy_model_dtype` on its module
    (model_patcher.py@e59d85a, archive_model_dtypes): under dynamic VRAM a load casts some weights
    (buffers, small layers, non-leaf modules' parameters) to it in place, with no backup."""
    found = {}
    for key in names:
        owner, _, attribute = key.rpartition(".")
        try:
            module = base.get_submodule(owner) if owner else base
        except AttributeError:
            continue
        dtype = getattr(module, f"{attribute}_comfy_model_dtype", None)
        if isinstance(dtype, torch.dtype):
            found[key] = dtype
    return found


def _fingerprint(value, full: bool = False, depth: int = 0):
    """A JSON-able summary of a value: tensors by shape, dtype and a hash of (a sample of) their values."""
    if torch.is_tensor(value):
        return _tensor_digest(value, full)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if depth >= MAX_FINGERPRINT_DEPTH:
        return type(value).__name__
    code = getattr(value, "__code__", None)
    if code is not None:  # a function (RescaleCFG's sampler_cfg_function): what its closure and defaults hold
        def read():
            return [getattr(value, "__qualname__", "function"), _fingerprint(list(value.__defaults__ or ()), full, depth + 1),
                    _fingerprint(_closure_settings(value, code), full, depth + 1)]

        return _remembered(value, (full, depth), read) if isinstance(value, types.FunctionType) else read()
    if isinstance(value, dict):
        return {str(k): _fingerprint(v, full, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v, full, depth + 1) for v in value]
    hint = getattr(value, "cond_hint_original", None)  # a ControlNet (comfy/controlnet.py), chained by previous_controlnet
    if hint is not None or hasattr(value, "previous_controlnet"):
        return [type(value).__name__, _fingerprint(getattr(value, "strength", None), full, depth + 1),
                _fingerprint(hint, full, depth + 1), _fingerprint(getattr(value, "timestep_percent_range", None), full, depth + 1),
                _control_weights_digest(value), _fingerprint(getattr(value, "previous_controlnet", None), full, depth + 1)]
    keyframes = getattr(getattr(value, "hook_keyframe", None), "keyframes", None)
    if isinstance(keyframes, list):  # a comfy.hooks Hook (comfy/hooks.py@03a97b6): when, how strong, what
        frames = [[_fingerprint(getattr(k, a, None), full, depth + 1) for a in ("strength", "start_percent", "guarantee_steps")]
                  for k in keyframes[:MAX_KEYFRAMES_READ]]
        return [type(value).__name__, frames, _fingerprint(getattr(value, "_strength_model", None), full, depth + 1),
                _fingerprint(getattr(value, "weights", None), full, depth + 1)]
    members = getattr(value, "hooks", None)
    if isinstance(members, list):  # a comfy.hooks HookGroup on a cond
        return [type(value).__name__, _fingerprint(members[:MAX_HOOKS_READ], full, depth + 1)]
    weights = getattr(value, "weights", None)  # a LoRA adapter object (newer ComfyUI)
    if weights is not None:
        return [type(value).__name__, _fingerprint(weights, full, depth + 1)]
    if isinstance(value, functools.partial):
        return ["partial", *(_fingerprint(v, full, depth + 1) for v in (value.func, list(value.args), value.keywords))]
    if isinstance(value, torch.nn.Module):  # a hypernetwork's layers, a patch's projector
        return _remembered(value, depth, lambda: [type(value).__name__, _network_digest(value)])
    held = getattr(value, "model", None)
    if isinstance(held, torch.nn.Module) and hasattr(value, "patches") and hasattr(value, "model_options"):
        # a ModelPatcher inside a patch object (a MODEL_PATCH: USO's projector, an LLLite network)
        return _remembered(value, depth, lambda: [type(value).__name__, _network_digest(held),
                                                  _fingerprint(value.patches, False, depth + 1)])
    if callable(value) and not isinstance(value, type) and isinstance(getattr(value, "__dict__", None), dict):
        # a patch that is an object (HypernetworkLoader's hypernetwork_patch: the layers and the strength).
        # Tensors it holds are hashed whole: a control image sampled at a stride of a multiple of its
        # rows would be read in one column only.
        return _remembered(value, depth, lambda: [
            type(value).__qualname__,
            _fingerprint({k: v for k, v in vars(value).items() if not k.startswith("_")}, True, depth + 1)])
    return getattr(value, "__qualname__", type(value).__name__)


def _network_digest(module: torch.nn.Module) -> list:
    """A sample of each weight of a network a patch holds. Read as it is: a GPU load casts a patch's
    network in place (LoadedModel.model_load calls model_patches_to(model_dtype())), so a clone made
    after that reads other values, and calibrates once more; no rounding of the values makes the two
    readings agree (float32 -> float16 -> bfloat16 differs from float32 -> bfloat16 in 6 % of values)."""
    return [[name, _tensor_digest(t, full=False)] for name, t in _state_tensors(module).items()]


def _state_tensors(module: torch.nn.Module) -> dict:
    """module.state_dict(), with the module's own parameter for each meta placeholder in it:
    ComfyUI-GGUF's layers save placeholders there for their quantised weights, whose blocks are what
    tells two GGUF finetunes apart."""
    state = module.state_dict()
    placeholders = {k for k, v in state.items() if torch.is_tensor(v) and v.device.type == "meta"}
    if placeholders:
        state.update({k: t.data for k, t in module.named_parameters() if k in placeholders})
    return state


def _remembered(owner, key, read):
    """The fingerprint of an object as first read (see _FIRST_READINGS); read again each time
    for an object that cannot be weakly referenced."""
    try:
        remembered = _FIRST_READINGS.setdefault(owner, {})
    except TypeError:
        return read()
    if key not in remembered:
        remembered[key] = read()
    return remembered[key]


# A function's (or a patch object's) fingerprint as first read: what its closure holds that the checks
# below do not see as state (a cache filled through an expression key, a counter) may change as it
# samples; the settings do not, so the first reading, taken before the sampler downstream of the
# calibration runs, stands.
_FIRST_READINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _closure_settings(function, code) -> list:
    """What a function's closure holds that is a setting (RescaleCFG's multiplier, SkipLayerGuidance's
    layer lists), not state: a variable the function reassigns (APG's `nonlocal running_avg,
    prev_sigma`) or changes in place (a wrapper's call log it appends to, a cache it stores into)
    differs after every run and would make every run a cache miss."""
    state = _state_variables(code)
    cells = []
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        if name in state:
            continue
        try:
            held = cell.cell_contents
        except ValueError:  # a variable the function has not bound yet
            continue
        if isinstance(held, (list, set, frozenset)) and all(isinstance(v, (int, float, str, bool)) for v in held):
            held = list(held) if isinstance(held, list) else sorted(held, key=repr)
            cells.append(held if len(held) <= MAX_CLOSURE_ITEMS else [len(held), *held[:MAX_CLOSURE_ITEMS]])
        elif isinstance(held, (int, float, str, bool, tuple, dict)) or held is None or torch.is_tensor(held):
            cells.append(held)
        else:
            cells.append(type(held).__name__)
    return cells


# Methods that change a list, set or dict in place: a closure variable they are called on is state.
_MUTATING_METHODS = frozenset({"append", "extend", "insert", "add", "update", "pop", "popitem", "clear", "remove",
                               "discard", "setdefault", "sort", "reverse", "__setitem__", "__delitem__", "__iadd__"})


@functools.lru_cache(maxsize=256)
def _state_variables(code) -> frozenset:
    """The closure variables a function's code (or a function nested in it) assigns, deletes, calls a
    mutating method on, or stores an item into (`log[k] = v`: the variable, the key, STORE_SUBSCR)."""
    names, pending = set(), [code]
    while pending:
        current = pending.pop()
        instructions = list(dis.get_instructions(current))
        for i, ins in enumerate(instructions):
            if ins.opname in ("STORE_DEREF", "DELETE_DEREF"):
                names.add(ins.argval)
            elif ins.opname == "LOAD_DEREF" and _changes_in_place(instructions[i + 1:i + 17]):
                names.add(ins.argval)
        pending.extend(c for c in current.co_consts if inspect.iscode(c))
    return frozenset(names) & frozenset(code.co_freevars)


# Instructions that push values and pop none (3.12 added LOAD_FAST_CHECK, 3.13 the two-value
# superinstructions, 3.14 LOAD_SMALL_INT and the BORROW forms), and those that combine the top `arg`
# values into one (a slice, a tuple of indices): a subscript's key is built of these.
_LOADS_ONE_VALUE = frozenset({"LOAD_CONST", "LOAD_SMALL_INT", "LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW",
                              "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_TWO_VALUES = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})
_COMBINES_VALUES = frozenset({"BUILD_SLICE", "BUILD_TUPLE"})


def _changes_in_place(after: list) -> bool:
    """Whether the instructions after a closure variable is loaded change it: a mutating method
    (`log.append(x)`), an item or slice stored or deleted (`cache[k] = v`, `buffer[:] = v`: the key is
    built above the variable, then the store), or an item updated (`counts[k] += 1`, `h[:, 0] *= 2`: the
    key, then a copy of both, down to the store)."""
    if not after:
        return False
    if after[0].opname in ("LOAD_ATTR", "LOAD_METHOD"):
        return after[0].argval in _MUTATING_METHODS
    # the variable is the container only when exactly one value (the key; a slice's two bounds) is built
    # above it; as the key or the stored value (`h[:, channel] *= 2`, `out[k] = scale`) it is a setting
    above = 0
    for n, ins in enumerate(after):
        if ins.opname in _LOADS_ONE_VALUE:
            above += 1
        elif ins.opname in _LOADS_TWO_VALUES:
            above += 2
        elif ins.opname in _COMBINES_VALUES and isinstance(ins.arg, int) and 0 < ins.arg <= above:
            above -= ins.arg - 1
        elif ins.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            return above == 1
        elif ins.opname == "STORE_SLICE":
            return above == 2
        # `t[k] += v` copies the container and its key (COPY 2; 3.10: DUP_TOP_TWO); a walrus or a chained
        # comparison copies one value (COPY 1), which says nothing of the variable below it
        elif (ins.opname == "DUP_TOP_TWO" or (ins.opname == "COPY" and ins.arg == 2)) and above == 1:
            return any(later.opname == "STORE_SUBSCR" for later in after[n + 1:])
        else:
            return False
    return False


def _control_weights_digest(control) -> dict | None:
    """Which model a ControlNet runs: a sample of its network's weights (ControlNet's control_model,
    T2IAdapter's t2i_model), or of a Control-LoRA's weights (built into a network only while sampling)."""
    network = getattr(control, "control_model", None) or getattr(control, "t2i_model", None)
    weights = network.state_dict() if isinstance(network, torch.nn.Module) else getattr(control, "control_weights", None)
    if not isinstance(weights, dict):
        return None
    return {str(k): _tensor_digest(v, full=False) for k, v in sorted(weights.items(), key=lambda kv: str(kv[0]))
            if torch.is_tensor(v)}


def _sampling_fingerprint(model_sampling) -> dict:
    """Its classes (ComfyUI combines e.g. ModelSamplingDiscrete with EPS or V_PREDICTION in a class of
    one name), their plain settings (our patch's conventions ride on its class), its own settings and
    its sigma table."""
    classes = [c for c in type(model_sampling).__mro__ if c.__module__ != "builtins" and not c.__module__.startswith("torch")]
    settings = {}
    for cls in reversed(classes):
        settings.update({k: v for k, v in vars(cls).items()
                         if not k.startswith("_") and isinstance(v, (int, float, str, bool))})
    for name in ("sigma_min", "sigma_max", "sigma_data", "shift", "multiplier", "noise_scale"):
        value = getattr(model_sampling, name, None)
        if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1):
            settings[name] = float(value)
    sigmas = getattr(model_sampling, "sigmas", None)
    return {"classes": [c.__qualname__ for c in classes], "settings": settings,
            "sigmas": _tensor_digest(sigmas, full=True) if torch.is_tensor(sigmas) else None}


def model_fingerprint(model) -> dict:
    """What a schedule depends on in a ModelPatcher: weights, patches, model sampling, options."""
    base = model.model
    weights = _state_tensors(base)
    # While a model is loaded its weights may carry its LoRA patches; the originals are in `backup`.
    for key, saved in (getattr(model, "backup", None) or {}).items():
        original = getattr(saved, "weight", None)
        if key in weights and torch.is_tensor(original):
            weights[key] = original
    weights = {k: v for k, v in weights.items() if k.startswith("diffusion_model.")} or weights
    model_dtypes = _model_dtypes(base, weights)
    sampling = _sampling_fingerprint(model.get_model_object("model_sampling"))
    return {
        "model": type(base).__name__,
        # the teacher's controller depends on it; fp8 weights may run in float16 or bfloat16
        "precision": precision_name(base_compute_dtype(base)),
        "weights": {k: _tensor_digest(v, full=False, as_dtype=model_dtypes.get(k)) for k, v in sorted(weights.items())},
        "patches": _fingerprint(getattr(model, "patches", {})),
        "sampling": sampling,
        "options": _fingerprint({k: v for k, v in model.model_options.items()
                                 if k not in ("transformer_options", COMPILE_OPTION)}),
        "transformer_options": _fingerprint(_without_compile(model.model_options.get("transformer_options", {}))),
    }


# TorchCompileModel changes how the model runs, not what it computes: its APPLY_MODEL wrapper and its
# options stay out of the key (comfy_api/torch_helpers/torch_compile.py, 0.3.64 and @10448e6).
COMPILE_OPTION, COMPILE_WRAPPER = "torch_compile_kwargs", "torch.compile"


def _without_compile(transformer_options):
    wrappers = transformer_options.get("wrappers") if isinstance(transformer_options, dict) else None
    if not isinstance(wrappers, dict):
        return transformer_options
    kept = {kind: {k: v for k, v in by_key.items() if k != COMPILE_WRAPPER} if isinstance(by_key, dict) else by_key
            for kind, by_key in wrappers.items()}
    kept = {kind: by_key for kind, by_key in kept.items() if by_key}  # an emptied kind is as none
    rest = {k: v for k, v in transformer_options.items() if k != "wrappers"}
    return {**rest, "wrappers": kept} if kept else rest


def conditioning_fingerprint(conditioning) -> list:
    return [[_tensor_digest(c[0], full=True), _fingerprint(c[1], full=True)] for c in conditioning]


def cache_key(model, positive, negative, cfg: float, latent: torch.Tensor, draws: int, seed: int,
              settings: CalibrationSettings) -> str:
    """latent: one image's latent (where an eps model's solve starts, with the noise)."""
    description = {
        "version": CACHE_VERSION,
        "model": model_fingerprint(model),
        "positive": conditioning_fingerprint(positive),
        "negative": conditioning_fingerprint(negative),
        "cfg": float(cfg), "latent": list(latent.shape), "latent_values": _tensor_digest(latent, full=True),
        "draws": draws, "seed": seed,
        "settings": settings.__dict__,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_cache(path: Path, data: dict) -> None:
    """Written to a temporary file, then renamed over the name: a reader (a second ComfyUI sharing the
    user directory) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def prune_cache(directory: Path, keep: int) -> int:
    """Deletes the least recently used cache files beyond the newest `keep` (a read marks a file used),
    so a year of prompts does not fill the user directory, and the partial writes of processes that
    were killed while writing. Returns how many it deleted."""
    try:
        entries, partials = [], []
        for entry in os.scandir(directory):
            if CACHE_FILE_NAME.fullmatch(entry.name) and entry.is_file():
                entries.append((entry.stat().st_mtime, entry.path))
            elif PARTIAL_FILE_NAME.fullmatch(entry.name) and entry.is_file():
                partials.append((entry.stat().st_mtime, entry.path))
    except OSError:
        return 0
    entries.sort(reverse=True)
    oldest_write = time.time() - STALE_PARTIAL_S
    deleted = 0
    for _, stale in entries[keep:] + [p for p in partials if p[0] < oldest_write]:
        try:
            os.remove(stale)
            deleted += 1
        except OSError:  # gone already (another ComfyUI pruned it) or locked: the next prune retries
            pass
    return deleted


def _mark_used(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only user directory: pruning then goes by the write time
        pass


def _read_cache(path: Path, steps: int, sigma_max: float):
    """The cached calibration, or None (then it runs again) for a file that is unreadable or edited
    into what no calibration of this model writes: a schedule starts at the model's sigma_max."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sigmas = [float(s) for s in data["sigmas"]]
    # RecursionError: a file nested past the parser's depth; OverflowError: an integer too large for a float
    except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError):
        return None
    good = (len(sigmas) == steps + 1 and all(math.isfinite(s) for s in sigmas) and sigmas[-1] == 0.0
            and all(b < a for a, b in zip(sigmas, sigmas[1:])) and math.isclose(sigmas[0], sigma_max, rel_tol=1e-5))
    return data if good else None


def calibrate(model, positive, negative, cfg: float, latent: dict, settings: CalibrationSettings, draws: int,
              seed: int, use_cache: bool = True) -> tuple[torch.Tensor, str, Calibration | None]:
    """The calibrated sigmas for this model and these inputs: from the cache, or computed (and cached).
    Returns (sigmas, report, the Calibration when one ran)."""
    import comfy.model_sampling
    import comfy.sample
    import comfy.samplers
    import latent_preview

    require_supported_config(getattr(model.model, "model_config", None))
    samples = samples_as_samplers_prepare_them(model, latent)
    latent_image = samples[:1].repeat(draws, *[1] * (samples.dim() - 1))
    if not torch.isfinite(latent_image).all():  # it would reach the model as NaN, and read as the model's fault
        raise ValueError("FlowAnime Calibrated Schedule: the 'latent' input holds NaN or infinite values; "
                         "give it an empty latent (Empty Latent for Model) or a finite encoded image.")
    model_sampling = model.get_model_object("model_sampling")
    sigma_max = float(model_sampling.sigma_max)
    # A flow's solve starts from pure noise at sigma 1, so the latent's values cannot matter there
    from_noise = isinstance(model_sampling, comfy.model_sampling.CONST) and sigma_max >= 1.0
    key_latent = torch.zeros_like(latent_image[0]) if from_noise else latent_image[0]
    key = cache_key(model, positive, negative, cfg, key_latent, draws, seed, settings)
    path = cache_directory() / f"{key}.json"
    if use_cache:
        cached = _read_cache(path, settings.steps, sigma_max)
        if cached is not None:
            _mark_used(path)
            report = f"read from the cache ({path.name}): no model calls. Calibrated: {cached.get('report', '')}"
            return torch.tensor(cached["sigmas"], dtype=torch.float32), report, None

    found = {}
    # The node's bar in the editor (teacher, then checks), with a preview of the teacher's image so far
    preview = latent_preview.prepare_callback(model, 100)

    def bar(fraction: float, denoised: torch.Tensor):
        preview(round(100 * fraction) - 1, denoised[:1], None, 100)

    def calibration_sampler(k_model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = extra_args or {}
        floor = max(settings.sigma_floor, sigma_floor(k_model))
        found["floor"] = floor
        # the teacher is adams_pc, whose controller allows for a half-precision model's rounding
        used = replace(settings, sigma_floor=floor, model_precision=model_precision(k_model))
        s_in = x.new_ones([x.shape[0]])

        def denoise(x_, sigma):
            return k_model(x_, sigma * s_in, **extra_args).to(x_.dtype)

        found["result"] = calibrate_schedule(denoise, x, float(sigmas[0]), settings.steps, settings.order, used,
                                             on_model_call=interrupt_check(), on_progress=bar,
                                             breakpoints=conditioning_breakpoints(k_model, float(sigmas[0]), floor))
        return x

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    noise = comfy.sample.prepare_noise(latent_image, seed)
    # as long as the schedule the sampler will run: ComfyUI hands the sigmas to the model as
    # transformer_options["sample_sigmas"], and a compiled UNet guards on their length
    sigmas = torch.linspace(sigma_max, 0.0, settings.steps + 1)
    guider.sample(noise, latent_image, comfy.samplers.KSAMPLER(calibration_sampler), sigmas, seed=seed)
    result: Calibration = found["result"]
    report = result.summary()
    if found["floor"] > settings.sigma_floor:  # an eps/v model: the schedule ends higher than the setting asks
        report += (f". sigma_floor raised from {settings.sigma_floor:g} to {found['floor']:.4g}, the smallest "
                   "sigma this model was trained on")
    if use_cache:  # off: neither read nor written
        try:
            _write_cache(path, {"sigmas": result.sigmas.tolist(), "report": report,
                                "teacher_calls": result.teacher_calls, "check_calls": result.check_calls,
                                "checked_error": result.checked_error})
            prune_cache(path.parent, MAX_CACHED_SCHEDULES)
        except OSError as e:  # a read-only user directory costs a recalibration next time, nothing else
            log.warning("FlowAnime calibration: could not write the cache %s: %s", path, e)
    log.info("FlowAnime calibration: %s", report)
    return result.sigmas, report, result
