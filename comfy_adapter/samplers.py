"""Our solvers inside ComfyUI's sampling: KSampler's sampler lists, KSAMPLER, the denoiser it passes.

Checked against newer ComfyUI: comfy/samplers.py@311c014 (KSAMPLER_NAMES; SAMPLER_NAMES =
KSAMPLER_NAMES + [...], a separate list; KSampler.SAMPLERS = SAMPLER_NAMES; ksampler(name) resolves
comfy.k_diffusion.sampling.sample_<name>; KSAMPLER.sample wraps the CFG guider in KSamplerX0Inpaint,
so the sampler function's model is KSamplerX0Inpaint -> .inner_model (guider) -> .inner_model
(BaseModel), and always passes a callback that reads x["x"], x["denoised"] and fn.__name__),
comfy_extras/nodes_custom_sampler.py@4be318a (the V3 KSamplerSelect reads
comfy.samplers.SAMPLER_NAMES each time its schema is built; sampler_object -> ksampler(name)),
nodes.py@02217e3 (KSampler, KSamplerAdvanced list comfy.samplers.KSampler.SAMPLERS) and
execution.py@04e2a91 (validate_inputs checks a combo value against the options INPUT_TYPES gives).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import itertools
import logging
import math

from ..samplers.k_sampler import SamplerConfig, make_sampler_function, splits_the_solve
from .models import require_supported_config

log = logging.getLogger("FlowAnime")
# Methods that integrate a rectified flow's velocity in sigma: on an eps or v model they extrapolate
# a quantity that is not nearly constant along the path (README: the `method` row).
FLOW_TIME_FIXED_METHODS = ("flow_multistep",)
# One call a step, the error estimate from the difference of two combinations of model outputs: a
# half-precision model's rounding alone keeps it above what their controller aims at, so they are told
# the model's precision (README: "Models that compute in bfloat16 or float16").
ONE_CALL_ADAPTIVE_METHODS = ("adams_pc", "flow_adams_pc")


def interrupt_check():
    import comfy.model_management

    return comfy.model_management.throw_exception_if_processing_interrupted


def base_model_of(k_model):
    """The BaseModel behind the denoiser KSAMPLER passes (KSamplerX0Inpaint -> guider -> BaseModel)."""
    try:
        return k_model.inner_model.inner_model
    except AttributeError:
        return None


def compute_dtype(k_model):
    """The dtype the diffusion model behind KSAMPLER's denoiser runs in, or None when unknown."""
    return base_compute_dtype(base_model_of(k_model))


def base_compute_dtype(base):
    """The dtype a BaseModel runs in, or None when unknown: newer ComfyUI's
    BaseModel.get_dtype_inference() (model_base.py@094c74c: manual_cast_dtype if set, else the
    weights' dtype); on 0.3.64, which lacks it, the same two read directly."""
    try:
        inference = getattr(base, "get_dtype_inference", None)
        if callable(inference):
            return inference()
        cast = getattr(base, "manual_cast_dtype", None)
        return cast if cast is not None else base.get_dtype()
    except (AttributeError, RuntimeError, StopIteration):  # no diffusion model, or one without parameters
        return None


def model_precision(k_model) -> str:
    """The diffusion model's compute dtype as the step control tells them apart: "float16",
    "bfloat16", else "float32" (also when unknown)."""
    return precision_name(compute_dtype(k_model))


def precision_name(dtype) -> str:
    import torch

    return {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(dtype, "float32")


def model_sampling_of(k_model):
    return getattr(base_model_of(k_model), "model_sampling", None)


def sigma_floor(k_model) -> float:
    """Flow (CONST) models are trained on continuous time: stop at sigma_min. Models with a discrete
    noise table (eps, v) stop no lower than the smallest sigma they were trained on."""
    if is_flow_model(k_model):
        return 0.0
    return float(model_sampling_of(k_model).sigma_min)


def is_flow_model(k_model) -> bool:
    """Whether ComfyUI samples this model as a rectified flow (CONST model sampling); True when unknown."""
    import comfy.model_sampling

    model_sampling = model_sampling_of(k_model)
    return model_sampling is None or isinstance(model_sampling, comfy.model_sampling.CONST)


def guider_cond_entries(k_model):
    """(name, processed cond dict) pairs of the guider behind KSAMPLER's wrapper (its `conds`)."""
    conds = getattr(getattr(k_model, "inner_model", None), "conds", None)
    for name, entries in (conds.items() if isinstance(conds, dict) else ()):
        for entry in entries or ():
            if isinstance(entry, dict):
                yield name, entry


def conditioning_of(k_model) -> dict:
    """The conditioning tensors ComfyUI's guider will feed the model ({"positive": [...], ...}), read
    from the guider behind KSAMPLER's wrapper (its processed `conds`), for the input check."""
    import torch

    conds = getattr(getattr(k_model, "inner_model", None), "conds", None)
    found = {name: [] for name in conds} if isinstance(conds, dict) else {}
    for name, entry in guider_cond_entries(k_model):
        tensors = found[name]
        tensors += [getattr(v, "cond", None) for v in (entry.get("model_conds") or {}).values()]
        tensors += [entry.get("cross_attn"), entry.get("pooled_output")]
    return {name: [t for t in tensors if torch.is_tensor(t)] for name, tensors in found.items()}


# Hook keyframes a solve is split at, at most: the largest strength changes, spread over the schedule.
MAX_HOOK_BREAKPOINTS = 8
# A keyframe is a breakpoint when it changes its hook's strength by at least this share of the hook's
# whole range: an on/off schedule, not one step of an interpolated fade (CreateHookKeyframesInterpolated
# makes up to 100), whose small steps cost more calls to split at than to step over.
HOOK_BREAKPOINT_SHARE = 0.25
MAX_HOOKS_READ = 64
MAX_KEYFRAMES_READ = 1024


def _keyframe_changes(hook) -> list[tuple[float, float, float]]:
    """(sigma, start_percent, strength change) of one hook's keyframes that split a solve exactly; none
    for a hook whose keyframes ComfyUI holds for several calls."""
    if getattr(hook, "_strength_model", 1.0) == 0:  # a WeightHook for CLIP alone leaves the model as it is
        return []
    frames = []  # (start_t, start_percent, strength, guarantee_steps); keyframes at one sigma: the last
    for frame in list(getattr(getattr(hook, "hook_keyframe", None), "keyframes", None) or ())[:MAX_KEYFRAMES_READ]:
        entry = (float(frame.start_t), float(frame.start_percent), float(frame.strength), int(frame.guarantee_steps))
        if not all(math.isfinite(v) for v in entry[:3]):
            return []
        if frames and frames[-1][0] == entry[0]:
            frames[-1] = (*entry[:3], max(frames[-1][3], entry[3]))
        else:
            frames.append(entry)
    if any(f[3] > 1 for f in frames):  # held for several calls (guarantee_steps): a count of calls, not a sigma,
        return []                      # decides where the next keyframe starts
    strengths = [f[2] for f in frames]
    spread = max(strengths, default=0.0) - min(strengths, default=0.0)
    return [(frame[0], frame[1], abs(frame[2] - before[2])) for before, frame in zip(frames, frames[1:])
            if spread > 0 and abs(frame[2] - before[2]) >= HOOK_BREAKPOINT_SHARE * spread]


def hook_keyframe_changes(hooks) -> list[tuple[float, float, float]]:
    """(sigma, start_percent, strength change) where a keyframe of one of a cond's hooks changes the
    model's strength by a large share of that hook's range (HOOK_BREAKPOINT_SHARE).
    comfy/hooks.py@03a97b6 and 0.3.64: process_conds calls initialize_timesteps, which sets each
    HookKeyframe's `start_t` (a sigma) from its start_percent; prepare_current_keyframe moves to a
    keyframe at the first call at or below its start_t once the one before has had its guarantee_steps
    calls, and never back, so a rejected step past it would leave the later strength on. A WeightHook's
    keyframe strength scales its `_strength_model`. Another pack's hook objects are read without
    trusting them: whatever one raises leaves that hook out."""
    changes = []
    try:
        listed = list(getattr(hooks, "hooks", None) or ())[:MAX_HOOKS_READ]
    except Exception as e:
        log.debug("FlowAnime: a cond's hooks could not be read: %s", e)
        return changes
    for hook in listed:
        try:
            changes += _keyframe_changes(hook)
        except Exception as e:
            log.debug("FlowAnime: a hook's keyframes could not be read: %s", e)
    return changes


def largest_spread_changes(changes, limit: int) -> list[float]:
    """The sigmas of at most `limit` changes: largest first, equal ones (to 4 decimals) as far apart in
    percent from those already kept as can be."""
    left, kept = list(changes), []
    while left and len(kept) < limit:
        def rank(change):
            gap = min((abs(change[1] - k[1]) for k in kept), default=math.inf)
            return round(change[2], 4), gap
        best = max(left, key=rank)
        kept.append(best)
        left.remove(best)
    return [sigma for sigma, _, _ in kept]


# Model patches limited to part of the schedule turn on and off at sigmas their patch functions close
# over (SkipLayerGuidanceDiT / SkipLayerGuidanceSD3 and PatchModelAddDownscale in ComfyUI, and packs
# written after them) or their patch objects hold (IPAdapter plus, InstantID and the like: one entry
# per adapter applied) under these names.
RANGE_CLOSURE_NAMES = frozenset({"sigma_start", "sigma_end"})
RANGE_ATTRIBUTE_NAMES = frozenset({"sigma_start", "sigma_end", "sigma_starts", "sigma_ends"})
MAX_PATCH_BREAKPOINTS = 16
MAX_OPTIONS_READ = 4096
MAX_RANGES_PER_PATCH = 64


def _closure_values(fn, names):
    """The values a function (or a functools.partial or bound method of one) closes over under `names`."""
    for _ in range(4):  # partial of a bound method of ...: unwrapped a bounded number of times
        inner = getattr(fn, "func", None) or getattr(fn, "__func__", None)
        if inner is None or inner is fn:
            break
        fn = inner
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), cells or ()):
        if name in names:
            try:
                yield cell.cell_contents
            except ValueError:  # a cell not yet filled
                continue


def patch_range_breakpoints(model_options) -> list:
    """The sigmas where a model patch limited to part of the schedule turns on or off, read from the
    functions in model_options (lists and dicts walked once each, to a bounded number of items) that
    close over `sigma_start` / `sigma_end`: comfy_extras/nodes_slg.py (SkipLayerGuidanceDiT's
    post_cfg_function, the Simple variant's calc_cond_batch_function; SkipLayerGuidanceSD3 calls the
    first) and nodes_model_downscale.py (input_block_patch), in 0.3.64 and at Comfy-Org/ComfyUI@39c19fb;
    and from patch objects' instance fields `sigma_starts` / `sigma_ends` (lists: cubiq/
    ComfyUI_IPAdapter_plus@01adae3's CrossAttentionPatch, in transformer_options' patches_replace) or
    `sigma_start` / `sigma_end` (its older releases, InstantID)."""
    found, stack, queued, visited = [], [model_options], 1, set()
    while stack:
        item = stack.pop()
        try:  # another pack's object: whatever it raises leaves it out
            if isinstance(item, (dict, list, tuple)):
                if id(item) in visited:
                    continue
                visited.add(id(item))
                inner = list(itertools.islice(item.values() if isinstance(item, dict) else item,
                                              max(0, MAX_OPTIONS_READ - queued)))
                queued += len(inner)
                stack.extend(inner)
            elif callable(item):
                found.extend(_closure_values(item, RANGE_CLOSURE_NAMES))
                if not inspect.isroutine(item):  # the instance's own fields, not its attributes
                    fields = getattr(item, "__dict__", None)
                    for name in RANGE_ATTRIBUTE_NAMES.intersection(fields if isinstance(fields, dict) else ()):
                        value = fields[name]
                        found.extend(list(value)[:MAX_RANGES_PER_PATCH] if isinstance(value, (list, tuple)) else [value])
        except Exception as e:
            log.debug("FlowAnime: a model patch could not be read: %s", e)
    return found


def _as_sigma(value) -> float | None:
    """A finite float from a number or a one-value tensor, else None."""
    import torch

    try:
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            return float(value)
    except Exception:  # a meta tensor, a huge int
        pass
    return None


def conditioning_breakpoints(k_model, sigma_start: float = math.inf, sigma_end: float = 0.0) -> list[float]:
    """The sigmas where a conditioning or a ControlNet starts or stops, a hook's keyframe changes its
    strength (hook_keyframe_changes) or a model patch turns on or off (patch_range_breakpoints); of
    the last two, the ones that split a solve from sigma_start to sigma_end. Read from the guider
    behind KSAMPLER's wrapper; whatever cannot be read is left out, never raised.
    comfy/samplers.py@311c014 and 0.3.64: calculate_start_end_timesteps puts `timestep_start` /
    `timestep_end` (sigmas, from start_percent / end_percent) on a processed cond, which
    get_area_and_mult uses only for sigma in [timestep_end, timestep_start]; pre_run_control gives
    each ControlNet (and the ones chained before it, `previous_controlnet`) a `timestep_range`
    (start, end) in sigmas, outside which comfy/controlnet.py@03b1ca6's get_control leaves it out."""
    found, hook_changes, seen_hooks = set(), {}, set()

    def add(value):
        sigma = _as_sigma(value)
        if sigma is not None:
            found.add(sigma)

    try:
        for _, entry in guider_cond_entries(k_model):
            add(entry.get("timestep_start"))
            add(entry.get("timestep_end"))
            control, seen = entry.get("control"), 0
            while control is not None and seen < 64:  # a chain of ControlNets, bounded
                for value in getattr(control, "timestep_range", None) or ():
                    add(value)
                control, seen = getattr(control, "previous_controlnet", None), seen + 1
            hooks = entry.get("hooks")
            if hooks is not None and id(hooks) not in seen_hooks and len(seen_hooks) < MAX_HOOKS_READ:
                seen_hooks.add(id(hooks))
                for sigma, percent, jump in hook_keyframe_changes(hooks):
                    known = sigma in hook_changes
                    # the selection below compares every candidate with those kept: a bounded number of them
                    if (known or len(hook_changes) < MAX_KEYFRAMES_READ) and splits_the_solve(sigma, sigma_start, sigma_end) \
                            and jump > hook_changes.get(sigma, (0, 0, 0))[2]:
                        hook_changes[sigma] = (sigma, percent, jump)
        found.update(largest_spread_changes(hook_changes.values(), MAX_HOOK_BREAKPOINTS))
        patched = {sigma for sigma in map(_as_sigma, patch_range_breakpoints(
                   getattr(getattr(k_model, "inner_model", None), "model_options", None)))
                   if sigma is not None and splits_the_solve(sigma, sigma_start, sigma_end)}
        found.update(sorted(patched, reverse=True)[:MAX_PATCH_BREAKPOINTS])
    except Exception as e:  # the solve then runs unsplit where it could not read
        log.debug("FlowAnime: the conditioning's breakpoints could not all be read: %s", e)
    return sorted(found)


def mask_switching(k_model, extra_args: dict):
    """Where an inpainting mask that changes with sigma switches between two sigmas (samplers/ode.py:
    Switching), or None when the mask is fixed or absent. ComfyUI's KSamplerX0Inpaint
    (comfy/samplers.py@311c014 and 0.3.64) calls model_options["denoise_mask_function"](sigma,
    denoise_mask, extra_options={"model": its inner model, "sigmas": the schedule}) before every model
    call, with the denoise_mask KSAMPLER put in extra_args; Differential Diffusion sets such a function
    (comfy_extras/nodes_differential_diffusion.py: each value of the mask opens at its own sigma). The
    same function is read here at the two sigmas."""
    import torch

    mask = extra_args.get("denoise_mask")
    mask_function = (extra_args.get("model_options") or {}).get("denoise_mask_function")
    if not torch.is_tensor(mask) or mask_function is None:
        return None
    extra_options = {"model": getattr(k_model, "inner_model", None), "sigmas": getattr(k_model, "sigmas", None)}
    # a step compares its start with its end and with a grid inside it: the few latest masks are kept
    # (each is the latent's size, large for video)
    seen = collections.OrderedDict()

    def mask_at(sigma: float):
        if sigma in seen:
            seen.move_to_end(sigma)
        else:
            if len(seen) >= 4:
                seen.popitem(last=False)
            # sigma as KSamplerX0Inpaint gets it: one per image, float32 (the mask may be float16)
            sigmas = torch.full((mask.shape[0],), sigma, dtype=torch.float32, device=mask.device)
            seen[sigma] = mask_function(sigmas, mask, extra_options=extra_options)
        return seen[sigma]

    def switching(sigma_a: float, sigma_b: float):
        try:
            a, b = mask_at(sigma_a), mask_at(sigma_b)
            return torch.ne(a, b) if torch.is_tensor(a) and torch.is_tensor(b) and a.shape == mask.shape else None
        except Exception as e:  # another pack's mask function: its own calls inside the sampler will say more
            log.debug("FlowAnime: the denoise mask function could not be read at sigma %g/%g: %s", sigma_a, sigma_b, e)
            return None

    return switching


def comfy_sampler_function(config: SamplerConfig):
    """The sampler function ComfyUI's KSAMPLER runs: fn(model, x, sigmas, extra_args, callback, disable)."""
    def build(cfg):
        return make_sampler_function(cfg, on_model_call=interrupt_check(), sigma_floor=sigma_floor,
                                     conditioning_of=conditioning_of, switching_of=mask_switching,
                                     breakpoints_of=conditioning_breakpoints)

    solve = build(config)
    solves = {config.model_precision: solve}  # one per compute dtype, for the one-call adaptive methods

    @functools.wraps(solve)
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        require_supported_config(getattr(base_model_of(model), "model_config", None))
        if config.method in FLOW_TIME_FIXED_METHODS and not is_flow_model(model):
            log.warning("FlowAnime %s is made for rectified-flow models; ComfyUI does not sample this model as one "
                        "(it predicts eps or v, or, as Cosmos-Predict2, runs in EDM sigmas), and there exp_multistep "
                        "(or ComfyUI's dpmpp_2m) follows the path more closely for the same calls. A model trained as "
                        "a rectified flow (Cosmos-Predict2 is one) samples as one after the FlowAnime rectified-flow "
                        "patch.", config.method)
        precision = config.model_precision
        if config.method in ONE_CALL_ADAPTIVE_METHODS:
            precision = model_precision(model)
            if precision != "float32":
                log.info("FlowAnime %s: the model computes in %s; the step controller allows for its rounding.",
                         config.method, precision)
        if precision not in solves:
            solves[precision] = build(dataclasses.replace(config, model_precision=precision))
        return solves[precision](model, x, sigmas, extra_args, callback, disable)

    return sample


def make_comfy_sampler(config: SamplerConfig):
    """A SAMPLER for SamplerCustom / SamplerCustomAdvanced."""
    import comfy.samplers

    return comfy.samplers.KSAMPLER(comfy_sampler_function(config))


def sampler_name_lists() -> list[list]:
    """Every list of sampler names a ComfyUI node offers, each list once (some are the same object)."""
    import comfy.samplers

    lists = [comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSampler.SAMPLERS]
    return list({id(names): names for names in lists}.values())


def register_ksampler_entries(entries: dict[str, SamplerConfig]) -> bool:
    """Add entries to KSampler's sampler list (and KSamplerSelect's, which reads the same list).

    KSampler resolves a name through comfy.k_diffusion.sampling.sample_<name>, so each entry is put
    there. Returns False when ComfyUI is not importable (the pack imported outside ComfyUI).
    """
    try:
        import comfy.k_diffusion.sampling as k_sampling
        import comfy.samplers  # noqa: F401
    except ImportError:
        return False
    for name, config in entries.items():
        setattr(k_sampling, f"sample_{name}", comfy_sampler_function(config))
        for names in sampler_name_lists():
            if name not in names:
                names.append(name)
    return True
