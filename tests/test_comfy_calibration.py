"""The Calibrated Schedule node inside the real ComfyUI: in a graph with SamplerCustomAdvanced on the
tiny SD3 and SD1.5 stand-ins, its cache (a second run makes no model call; another CFG recalibrates),
its report, and clear errors for bad settings."""

import copy
import functools
import json

import flowanime_testkit as kit
import pytest
import torch

NODE = "FlowAnimeCalibratedSchedule"
# A loose teacher and no check: random-weight stand-ins are stiff, and the check has its own test.
NODE_DEFAULTS = dict(cfg=4.0, steps=6, order=3, draws=1, seed=0, teacher_log10_rtol=-1.5, check=False)


@pytest.fixture
def user_dir(comfyui, tmp_path):
    """ComfyUI's user directory moved to a temporary folder, so the cache starts empty."""
    import folder_paths

    previous = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(tmp_path / "user"))
    yield tmp_path / "user"
    folder_paths.set_user_directory(previous)


def calibrated_graph(family, steps=6, cfg=4.0):
    from comfy_execution.graph_utils import GraphBuilder

    unet, clip_type, empty_latent, _ = kit.FAMILIES[family]
    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=unet, weight_dtype="default").out(0)
    if family == "sd3":
        model = g.node(kit.PATCH, model=model, **{**kit.PATCH_DEFAULTS, "shift": 3.0}).out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type=clip_type).out(0)
    positive = g.node("CLIPTextEncode", clip=clip, text="1girl, solo").out(0)
    negative = g.node("CLIPTextEncode", clip=clip, text="lowres").out(0)
    latent = g.node(empty_latent, width=64, height=64, batch_size=2).out(0)
    schedule = g.node(NODE, model=model, positive=positive, negative=negative, latent=latent,
                      **{**NODE_DEFAULTS, "steps": steps, "cfg": cfg})
    guider = g.node("CFGGuider", model=model, positive=positive, negative=negative, cfg=cfg).out(0)
    sampler = g.node(kit.SAMPLER_NODE, method="exp_multistep", log10_rtol=-2.5, log10_atol=-3.5,
                     max_model_calls=300, sigma_min=0.001).out(0)
    noise = g.node("RandomNoise", noise_seed=5).out(0)
    samples = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler,
                     sigmas=schedule.out(0), latent_image=latent).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix=f"latents/calibrated_{family}")
    return g.finalize(), save.id, schedule.id


@pytest.mark.parametrize("family, channels", [("sd3", 16), ("sd15", 4)])
def test_calibrated_sigmas_drive_sampler_custom_advanced(comfyui, user_dir, family, channels):
    """The schedule node in a graph with SamplerCustomAdvanced; its progress bar (ComfyUI's hook, as
    the editor gets it) moves while it calibrates and reaches 100 %, with latent previews of the
    teacher's image when the user has previews on."""
    import comfy.utils
    from comfy.cli_args import LatentPreviewMethod, args

    graph, save_id, schedule_id = calibrated_graph(family)
    updates = []
    previous, method = comfy.utils.PROGRESS_BAR_HOOK, args.preview_method
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: updates.append((node_id, value, total, preview)))
    args.preview_method = LatentPreviewMethod.Latent2RGB  # `--preview-method latent2rgb`
    try:
        result = comfyui.run(graph)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        args.preview_method = method
    # 0.3.64 passes node_id None (the server's hook falls back to the node executing); the sampler's
    # bar counts its 6 steps, ours 100
    ours = [(value, preview) for node_id, value, total, preview in updates if node_id in (None, schedule_id) and total == 100]
    values = [value for value, _ in ours]
    assert len(ours) >= 3 and values == sorted(values) and values[-1] == 100, updates
    # (format, PIL image, size limit): the latent decoded by the family's RGB factors, as samplers preview
    assert all(preview is not None and preview[0] == "JPEG" and preview[1].size == (8, 8) for _, preview in ours)
    latent = comfyui.saved_latent(result, save_id)
    assert latent.shape == (2, channels, 8, 8) and torch.isfinite(latent).all() and latent.std() > 0
    report = result.outputs[schedule_id]["text"][0]
    assert "6 steps" in report and "calibration cost" in report and "0 check" in report
    # an eps model (the SD1.5 stand-in, unpatched) ends at its smallest trained sigma, and says so
    assert ("sigma_floor raised from 0.001 to 0.02917" in report) == (family == "sd15"), report
    assert len(list((user_dir / "flowanime" / "schedules").glob("*.json"))) == 1


def observed_calls(model):
    """A clone of the model that counts its diffusion-model calls."""
    calls = []
    m = model.clone()

    def wrapper(apply_model, args):
        calls.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


@pytest.fixture(scope="module")
def sd3_inputs(comfyui):
    model = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")[0]
    model = comfyui.node_class(kit.PATCH)().patch(model, **{**kit.PATCH_DEFAULTS, "shift": 3.0})[0]
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "sd3")[0]
    encode = comfyui.node_class("CLIPTextEncode")().encode
    return model, encode(clip, "1girl")[0], encode(clip, "lowres")[0], {"samples": torch.zeros((3, 16, 8, 8))}


def calibrate(comfyui, model, positive, negative, latent, **changes):
    out = comfyui.node_class(NODE)().calibrate(model, positive, negative, latent=latent, **{**NODE_DEFAULTS, **changes})
    return out["result"]


def test_a_second_run_reads_the_cache_without_model_calls(comfyui, user_dir, sd3_inputs):
    model, positive, negative, latent = sd3_inputs
    counted, calls = observed_calls(model)
    sigmas, report = calibrate(comfyui, counted, positive, negative, latent, check=True)
    first_calls = len(calls)
    assert first_calls > 6 and "calibration cost" in report
    # the reported cost is what the model saw: a CFG pair is one call, made as one batch of 2 x draws
    reported = int(report.split("calibration cost ")[1].split(" model calls")[0])
    assert reported == first_calls
    assert sigmas.shape == (7,) and float(sigmas[0]) == 1.0 and float(sigmas[-1]) == 0.0
    again, report2 = calibrate(comfyui, counted, positive, negative, latent, check=True)
    assert len(calls) == first_calls and "read from the cache" in report2
    assert torch.equal(again, sigmas)
    # what the schedule depends on changes the key: here the CFG
    calibrate(comfyui, counted, positive, negative, latent, check=True, cfg=2.0)
    assert len(calls) > first_calls


def test_without_the_cache_it_calibrates_again(comfyui, user_dir, sd3_inputs):
    model, positive, negative, latent = sd3_inputs
    counted, calls = observed_calls(model)
    calibrate(comfyui, counted, positive, negative, latent, use_cache=False)
    n = len(calls)
    calibrate(comfyui, counted, positive, negative, latent, use_cache=False)
    assert len(calls) == 2 * n


def test_a_scheduled_prompt_splits_the_teacher_and_puts_a_call_just_below_the_switch(comfyui, user_dir, sd3_inputs):
    """A prompt scheduled to change at 40 % (ConditioningSetTimestepRange): the teacher ends a segment
    just above the switch (conditioning_breakpoints, as the adaptive samplers do), and the schedule's
    nearer sigma sits just below it, so the step across it ends where the new prompt holds. The
    denoiser is Gaussian data whose mean follows the prompt."""
    from test_comfy_samplers import GAUSSIAN_STD, scheduled_prompt

    model, positive, negative, latent = sd3_inputs
    called = []

    def prompt_dependent(apply_model, args):
        x, sigma = args["input"], args["timestep"].reshape(-1, 1, 1, 1)
        called.append(float(sigma.max()))
        mean = 0.3 + 0.5 * torch.tanh(args["c"]["c_crossattn"].to(x).flatten(1).mean(1) * 50).reshape(-1, 1, 1, 1)
        s = GAUSSIAN_STD
        return mean + (1 - sigma) * s * s / ((1 - sigma) ** 2 * s * s + sigma ** 2) * (x - (1 - sigma) * mean)

    m = model.clone()
    m.set_model_unet_function_wrapper(prompt_dependent)
    switch = float(model.get_model_object("model_sampling").percent_to_sigma(0.4))
    sigmas, _ = calibrate(comfyui, m, scheduled_prompt(comfyui, positive, negative, 0.4), negative, latent,
                          use_cache=False, cfg=1.0, steps=8)
    assert any(switch < s <= switch * (1 + 1e-4) for s in called)
    assert any(switch * (1 - 1e-4) <= float(s) < switch for s in sigmas), sigmas


def test_what_changes_the_model_changes_the_cache_key(comfyui):
    """Each pair is one model in two forms whose schedules differ (a helper's audit calibrated both and
    found a cache hit): eps against v-prediction, our patch's two conventions, RescaleCFG off and on,
    two LoRAs at the same strength, two hypernetworks or strengths of one, a patch object's network
    and control image; a layer whose state dict holds meta placeholders (ComfyUI-GGUF's); the dtype the
    same weights compute in; an eps model's starting latent; a ControlNet's strength, hint and network."""
    from safetensors.torch import save_file

    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    settings = cal.CalibrationSettings(steps=6)
    sd15 = comfyui.node_class("UNETLoader")().load_unet(kit.SD15_UNET, "default")[0]
    sd3 = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")[0]
    conditioning = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    zeros4, zeros16 = torch.zeros(4, 8, 8), torch.zeros(16, 8, 8)

    def key(model, latent):
        return cal.cache_key(model, conditioning, conditioning, 4.0, latent, 1, 0, settings)

    sampling = comfyui.node_class("ModelSamplingDiscrete")()
    patch = comfyui.node_class(kit.PATCH)()
    rescale = comfyui.node_class("RescaleCFG")()
    lora = kit.make_tiny_sd15_lora(sd15.model.diffusion_model.state_dict())
    save_file({k: v * 3 if k.endswith("lora_up.weight") else v for k, v in lora.items()},
              str(comfyui.models_dir / "loras" / "flowanime_other_lora.safetensors"))
    loader = comfyui.node_class("LoraLoaderModelOnly")()
    pairs = {
        "eps / v": (sampling.patch(sd15, "eps", False)[0], sampling.patch(sd15, "v_prediction", False)[0], zeros4),
        "velocity": (patch.patch(sd3, **{**kit.PATCH_DEFAULTS, "velocity": "noise - data"})[0],
                     patch.patch(sd3, **{**kit.PATCH_DEFAULTS, "velocity": "data - noise"})[0], zeros16),
        "timestep": (patch.patch(sd3, **{**kit.PATCH_DEFAULTS, "timestep_convention": "sigma"})[0],
                     patch.patch(sd3, **{**kit.PATCH_DEFAULTS, "timestep_convention": "1 - sigma"})[0], zeros16),
        "RescaleCFG": (rescale.patch(sd15, 0.0)[0], rescale.patch(sd15, 1.0)[0], zeros4),
        "LoRA": (loader.load_lora_model_only(sd15, kit.SD15_LORA, 1.0)[0],
                 loader.load_lora_model_only(sd15, "flowanime_other_lora.safetensors", 1.0)[0], zeros4),
    }
    def computing_in(dtype):  # the same stored weights, run in another dtype (fp8 weights cast on the fly)
        patched = sd15.clone()
        patched.model = copy.copy(sd15.model)
        patched.model.manual_cast_dtype = dtype
        return patched

    pairs["compute dtype"] = (computing_in(torch.float16), computing_in(torch.bfloat16), zeros4)
    free_u = comfyui.node_class("FreeU_V2")()
    pairs["FreeU"] = (free_u.patch(sd15, 1.3, 1.4, 0.9, 0.2)[0], free_u.patch(sd15, 1.0, 1.4, 0.9, 0.2)[0], zeros4)
    slg = comfyui.node_class("SkipLayerGuidanceDiT")  # its layers: lists of ints in a closure
    pairs["SLG layers"] = tuple(slg.execute(sd3, 3.0, 0.0, 1.0, double_layers=layers, single_layers="").result[0]
                                for layers in ("0", "1")) + (zeros16,)
    # a patch that is an object (HypernetworkLoader's hypernetwork_patch): its layers and its strength
    from comfy_extras.nodes_hypernetwork import load_hypernetwork_patch

    def with_hypernetwork(seed, strength):
        generator = torch.Generator().manual_seed(seed)
        layers = {dim: [{"linear.0.weight": torch.randn(dim, dim, generator=generator) / dim,
                         "linear.0.bias": torch.zeros(dim)} for _ in range(2)] for dim in (320, 768)}
        path = comfyui.models_dir / f"flowanime_hypernetwork_{seed}.pt"
        torch.save(layers, path)
        patched = sd15.clone()
        hypernetwork = load_hypernetwork_patch(str(path), strength)
        patched.set_model_attn1_patch(hypernetwork)
        patched.set_model_attn2_patch(hypernetwork)
        return patched

    pairs["hypernetwork file"] = (with_hypernetwork(1, 1.0), with_hypernetwork(2, 1.0), zeros4)
    pairs["hypernetwork strength"] = (with_hypernetwork(1, 1.0), with_hypernetwork(1, 0.1), zeros4)

    def scaled_cfg(args, scale):
        return args["uncond"] + scale * (args["cond"] - args["uncond"])

    def with_partial(scale):
        patched = sd15.clone()
        patched.set_model_sampler_cfg_function(functools.partial(scaled_cfg, scale=scale))
        return patched

    pairs["partial's arguments"] = (with_partial(1.0), with_partial(2.0), zeros4)

    # a patch object holding a MODEL_PATCH (a ModelPatcher: USO's projector, an LLLite network) and a
    # control image: the network's weights and the whole image
    import comfy.model_patcher

    class ControlImagePatch:  # the attributes of newer ComfyUI's AnimaLLLitePatch (comfy/ldm/anima/lllite.py@773ef1b)
        def __init__(self, model_patch, image, strength):
            self.model_patch, self.image, self.strength = model_patch, image, strength

        def __call__(self, args):
            return args

    def network(seed):
        torch.manual_seed(seed)
        return comfy.model_patcher.ModelPatcher(torch.nn.Linear(16, 16), torch.device("cpu"), torch.device("cpu"))

    def line_art(row):  # a white page with one stroke; 64 strided values would all read column 0
        image = torch.ones(1, 1024, 1024, 3)
        image[:, row:row + 600, 300:310, :] = 0.0
        return image

    def with_control_patch(patch_network, image):
        patched = sd3.clone()
        patched.set_model_post_input_patch(ControlImagePatch(patch_network, image, 1.0))
        return patched

    first_network = network(1)
    pairs["patch's network"] = (with_control_patch(first_network, line_art(200)),
                                with_control_patch(network(2), line_art(200)), zeros16)
    pairs["patch's control image"] = (with_control_patch(first_network, line_art(200)),
                                      with_control_patch(first_network, line_art(350)), zeros16)

    def quantised_network(seed):  # the network's state dict holds meta placeholders, as a GGUF layer's does
        patcher = network(seed)
        layer = patcher.model
        layer._save_to_state_dict = lambda destination, prefix, keep_vars: destination.update(
            {prefix + name: torch.empty(parameter.shape, device="meta") for name, parameter in layer._parameters.items()})
        return patcher

    pairs["patch's quantised network"] = (with_control_patch(quantised_network(1), line_art(200)),
                                          with_control_patch(quantised_network(2), line_art(200)), zeros16)

    def quantised(scale):  # a finetune differing in one layer that ComfyUI-GGUF would load quantised
        patched = sd3.clone()
        patched.model = copy.deepcopy(sd3.model)
        layer = next(m for m in patched.model.diffusion_model.modules() if isinstance(m, torch.nn.Linear))
        with torch.no_grad():
            layer.weight.mul_(scale)

        def placeholders(destination, prefix, keep_vars):  # as GGMLLayer._save_to_state_dict (ComfyUI-GGUF ops.py@795e451)
            for name, parameter in layer._parameters.items():
                destination[prefix + name] = torch.empty(parameter.shape, device="meta")

        layer._save_to_state_dict = placeholders
        return patched

    pairs["GGUF-quantised layer's weights"] = (quantised(1.0), quantised(1.05), zeros16)
    for name, (a, b, latent) in pairs.items():
        assert key(a, latent) != key(b, latent), name
        assert key(a, latent) == key(a.clone(), latent), name  # and the key is stable
    assert key(sd15, zeros4) != key(sd15, zeros4 + 1)
    # one value of a large latent (an eps model's img2img start, retouched in one spot)
    start = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(0))
    retouched = start.clone()
    retouched[2, 77, 91] += 0.5
    assert key(sd15, start) != key(sd15, retouched)
    # a ControlNet in the conditioning: its strength and hint
    import comfy.controlnet

    def with_control(strength, hint, network):
        control = object.__new__(comfy.controlnet.ControlNet)  # the attributes the key reads
        control.strength, control.cond_hint_original, control.previous_controlnet = strength, hint, None
        control.timestep_percent_range, control.control_model = (0.0, 1.0), network
        return [[conditioning[0][0], {**conditioning[0][1], "control": control}]]

    torch.manual_seed(0)
    one, other = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)  # two ControlNets' networks
    keys = {cal.cache_key(sd15, with_control(*c), conditioning, 4.0, zeros4, 1, 0, settings)
            for c in [(1.0, torch.zeros(1, 3, 8, 8), one), (0.2, torch.zeros(1, 3, 8, 8), one),
                      (1.0, torch.ones(1, 3, 8, 8), one), (1.0, torch.zeros(1, 3, 8, 8), other)]}
    assert len(keys) == 4
    # a LoRA hook on the conditioning: its keyframes and its weights
    import comfy.hooks

    def with_hook(percent, scale):
        lora = {"diffusion_model.input_blocks.0.0.diff": torch.full((4,), scale)}
        group = comfy.hooks.create_hook_lora(lora, 1.0, 1.0)
        keyframes = comfy.hooks.HookKeyframeGroup()
        keyframes.add(comfy.hooks.HookKeyframe(1.0, 0.0))
        keyframes.add(comfy.hooks.HookKeyframe(0.0, percent))
        group.set_keyframes_on_hooks(keyframes)
        return comfy.hooks.set_hooks_for_conditioning(conditioning, group)

    keys = {cal.cache_key(sd15, with_hook(*c), conditioning, 4.0, zeros4, 1, 0, settings)
            for c in [(0.5, 0.02), (0.3, 0.02), (0.5, 0.05), (0.5, 0.02)]}
    assert len(keys) == 3


def test_compiling_the_model_keeps_the_cache_key(comfyui):
    """TorchCompileModel (comfy_api/torch_helpers/torch_compile.py: an APPLY_MODEL wrapper keyed
    "torch.compile" and model_options["torch_compile_kwargs"]) changes how the model runs, not what it
    computes: a schedule calibrated eager is read from the cache when the model is compiled, and back."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    settings = cal.CalibrationSettings(steps=6)
    sd15 = comfyui.node_class("UNETLoader")().load_unet(kit.SD15_UNET, "default")[0]
    conditioning = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]

    def key(model):
        return cal.cache_key(model, conditioning, conditioning, 4.0, torch.zeros(4, 8, 8), 1, 0, settings)

    keys = {key(sd15)}
    for backend in ("inductor", "cudagraphs"):
        compiled = sd15.clone()
        set_torch_compile_wrapper(model=compiled, backend=backend)
        keys.add(key(compiled))
    assert len(keys) == 1
    rescaled = comfyui.node_class("RescaleCFG")().patch(compiled, 0.7)[0]
    assert key(rescaled) != key(compiled)  # the other options still count


def test_a_weight_a_load_casts_in_place_to_its_recorded_dtype_keeps_the_cache_key(comfyui):
    """Newer ComfyUI records each weight's run dtype as `<name>_comfy_model_dtype` on its module, and
    its dynamic-VRAM load casts some weights to it in place, with no backup (model_patcher.py@e59d85a):
    the key after the load is the key before it. Another value of that weight still changes the key."""
    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    settings = cal.CalibrationSettings(steps=6)
    sd3 = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")[0]
    conditioning = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    latent = torch.zeros(16, 8, 8)
    model = sd3.clone()
    model.model = copy.deepcopy(sd3.model)
    layers = [m for m in model.model.diffusion_model.modules() if isinstance(m, torch.nn.Linear)][:3]
    for layer in layers:  # as archive_model_dtypes does when the model is built
        layer.weight_comfy_model_dtype = torch.bfloat16

    def key():
        return cal.cache_key(model, conditioning, conditioning, 4.0, latent, 1, 0, settings)

    before = key()
    for layer in layers:  # as the load does
        layer.weight.data = layer.weight.data.to(torch.bfloat16)
    assert key() == before
    with torch.no_grad():
        layers[0].weight.mul_(1.5)
    assert key() != before


def test_state_a_model_patch_keeps_between_runs_does_not_change_the_cache_key(comfyui):
    """APG keeps `nonlocal running_avg, prev_sigma` in its closure: None before the first sampling, a
    tensor after it. The key reads its settings (eta, momentum), not that state, so the same model
    object hits the cache on its second run (a review helper found 60 calls, then 60 again)."""
    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    settings = cal.CalibrationSettings(steps=6)
    sd15 = comfyui.node_class("UNETLoader")().load_unet(kit.SD15_UNET, "default")[0]
    conditioning = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    latent = torch.zeros(4, 8, 8)

    def key(model):
        return cal.cache_key(model, conditioning, conditioning, 4.0, latent, 1, 0, settings)

    apg = comfyui.node_class("APG")
    model = apg.execute(sd15, 1.0, 5.0, 0.5).result[0]
    before = key(model)
    (pre_cfg,) = model.model_options["sampler_pre_cfg_function"]
    for sigma in (14.6, 3.0):  # what a sampling run leaves behind
        pre_cfg({"conds_out": [torch.ones(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)], "sigma": torch.tensor([sigma]),
                 "cond_scale": 4.0})
    assert key(model) == before
    assert key(apg.execute(sd15, 0.5, 5.0, 0.5).result[0]) != before
    assert key(apg.execute(sd15, 1.0, 5.0, 0.0).result[0]) != before

    def patched(layers, scale):  # what closures hold: settings read, state changed in place
        calls, cache, counts = [], {}, {"runs": 0}

        def post_cfg(args):
            calls.append(args["sigma"])
            cache[len(calls)] = args["denoised"]
            counts["runs"] += 1
            return args["denoised"] * scale + sum(layers)
        m = sd15.clone()
        m.set_model_sampler_post_cfg_function(post_cfg)
        return m, post_cfg

    model, post_cfg = patched([0, 3], 0.5)
    before = key(model)
    post_cfg({"sigma": 1.0, "denoised": torch.zeros(1)})
    assert key(model) == before
    assert key(patched([0, 4], 0.5)[0]) != before and key(patched([0, 3], 0.6)[0]) != before


def test_a_closure_variable_is_state_only_when_the_function_changes_it(comfyui):
    """Settings used as a key or a stored value stay in the key (review helpers found `channel` in
    `h[:, channel] *= 2`, on Python 3.13 `scale` in `out[k] = scale`, and on 3.11+ `mix` in
    `lerp(h, mix, (w := 0.5))` before a store read as state: a changed setting would reuse a schedule)."""
    cal = comfyui.pack_submodule("comfy_adapter.calibration")

    def make():
        scale, channel, idx, layers, steps, calls, seen = 1.5, 3, [1], [3, 4], [0], [], {}
        buffer, running, mix = [0.0, 0.0], torch.zeros(1, 4), 0.25

        def patch(h, out, k, extra, flag):
            h = torch.lerp(h, mix, (w := 0.5))  # the walrus copies 0.5 (COPY 1), not the variable
            out[k] = scale + w
            h[:, channel] *= 2.0
            out[idx] += 1
            for i in layers:
                extra[i] = i
            steps[0] += 1
            calls.append(k)
            seen[k] = 1
            buffer[:] = [k, k]
            running[:, 0] *= 0.5
            if flag:
                key = k
            seen[key] = 2  # a key the compiler cannot prove bound (3.12+: LOAD_FAST_CHECK)
            return h
        return patch

    assert cal._state_variables(make().__code__) == {"steps", "calls", "seen", "buffer", "running"}


def test_bytecode_of_newer_pythons_is_read_as_this_ones(comfyui):
    """The instructions Python 3.12-3.14 compile the same stores to (a review helper disassembled them on
    3.12.1, 3.13.0 and 3.14): a key the compiler cannot prove bound loads with LOAD_FAST_CHECK (3.12+),
    `buffer[:] = v` stores with STORE_SLICE (3.12+), 3.13 loads two locals in one LOAD_FAST_LOAD_FAST."""
    from types import SimpleNamespace as Ins

    cal = comfyui.pack_submodule("comfy_adapter.calibration")

    def reads(*ops):
        return cal._changes_in_place([Ins(opname=op, arg=arg, argval=arg) for op, arg in ops])

    # the variable is the container
    assert reads(("LOAD_FAST_CHECK", "key"), ("STORE_SUBSCR", None))                       # cache[key] = x
    assert reads(("LOAD_CONST", None), ("LOAD_CONST", None), ("STORE_SLICE", None))        # buffer[:] = v
    assert reads(("LOAD_FAST_LOAD_FAST", ("i", "j")), ("STORE_SLICE", None))              # buffer[i:j] = v
    assert reads(("LOAD_CONST", slice(None)), ("LOAD_SMALL_INT", 0), ("BUILD_TUPLE", 2),   # running[:, 0] *= 0.5
                 ("COPY", 2), ("COPY", 2), ("BINARY_OP", 26), ("LOAD_CONST", 0.5), ("BINARY_OP", 18),
                 ("SWAP", 3), ("SWAP", 2), ("STORE_SUBSCR", None))
    # the variable is the stored value or part of the key: a setting
    assert not reads(("LOAD_FAST_LOAD_FAST", ("out", "k")), ("STORE_SUBSCR", None))      # out[k] = scale
    assert not reads(("LOAD_FAST_BORROW", "out"), ("LOAD_FAST_CHECK", "k"), ("STORE_SUBSCR", None))
    assert not reads(("BUILD_TUPLE", 2), ("COPY", 2), ("COPY", 2), ("BINARY_SUBSCR", None))  # h[:, channel] *= 2
    assert not reads(("LOAD_CONST", 0), ("BINARY_SUBSCR", None))                           # read only: steps[0]
    assert not reads(("LOAD_CONST", 0.5), ("COPY", 1), ("STORE_FAST", "w"), ("CALL", 3),     # lerp(h, mix, (w := 0.5))
                     ("STORE_FAST", "h"), ("LOAD_FAST", "out"), ("LOAD_FAST", "k"), ("STORE_SUBSCR", None))


@pytest.mark.parametrize("corrupt", ['{"sigmas": [1.0, "nan"]}', "[" * 200000 + "]" * 200000,
                                     '{"sigmas": [%s, 0.5, 0.0]}' % ("9" * 400), "edited"])
def test_a_corrupt_cache_file_is_recomputed(comfyui, user_dir, sd3_inputs, corrupt):
    """A bad value, JSON nested past the parser's depth (RecursionError), an integer too large for a
    float (OverflowError), or a schedule edited to start anywhere but the model's sigma_max is a cache
    miss, never an error or a schedule no calibration of this model makes."""
    model, positive, negative, latent = sd3_inputs
    counted, calls = observed_calls(model)
    calibrate(comfyui, counted, positive, negative, latent)
    (path,) = (user_dir / "flowanime" / "schedules").glob("*.json")
    if corrupt == "edited":  # the right length, decreasing, ending in 0, but from sigma 50 on a flow
        data = json.loads(path.read_text(encoding="utf-8"))
        data["sigmas"] = [50.0 * s for s in data["sigmas"]]
        corrupt = json.dumps(data)
    path.write_text(corrupt, encoding="utf-8")
    n = len(calls)
    sigmas, report = calibrate(comfyui, counted, positive, negative, latent)
    assert len(calls) > n and "read from the cache" not in report and torch.isfinite(sigmas).all()


def test_the_latent_is_prepared_as_the_sampler_prepares_it(comfyui, user_dir, sd3_inputs, monkeypatch):
    """Newer ComfyUI's fix_empty_latent_channels takes the latent's size tags (nodes.py@5aabaf5,
    nodes_custom_sampler.py@be91880): an empty latent tagged 8x for a 16x model is resized before
    sampling, so the calibration must solve on the resized latent too. 0.3.64's takes the latent only."""
    import comfy.sample

    model, positive, negative, _ = sd3_inputs
    fmt = copy.copy(model.get_model_object("latent_format"))
    fmt.spacial_downscale_ratio = 16
    model = model.clone()
    model.add_object_patch("latent_format", fmt)
    tagged = {"samples": torch.zeros((1, 16, 16, 16)), "downscale_ratio_spacial": 8}
    seen = []

    def newer(model, latent_image, downscale_ratio_spacial=None, downscale_ratio_temporal=None):
        seen.append((downscale_ratio_spacial, downscale_ratio_temporal))
        if downscale_ratio_spacial not in (None, 16) and torch.count_nonzero(latent_image) == 0:
            side = latent_image.shape[-1] * downscale_ratio_spacial // 16
            latent_image = torch.zeros((*latent_image.shape[:-2], side, side))
        return latent_image

    shapes = []
    counted = model.clone()
    counted.set_model_unet_function_wrapper(
        lambda apply, args: (shapes.append(tuple(args["input"].shape[-2:])), apply(args["input"], args["timestep"], **args["c"]))[1])
    calibrate(comfyui, counted, positive, negative, tagged)
    assert set(shapes) == {(16, 16)}  # 0.3.64: the latent as given
    monkeypatch.setattr(comfy.sample, "fix_empty_latent_channels", newer)
    shapes.clear()
    calibrate(comfyui, counted, positive, negative, tagged, use_cache=False)
    assert seen == [(8, None)] and set(shapes) == {(8, 8)}


def test_a_latent_that_is_not_finite_is_named(comfyui, user_dir, sd3_inputs):
    model, positive, negative, latent = sd3_inputs
    samples = latent["samples"].clone()
    samples[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'latent' input holds NaN"):
        calibrate(comfyui, model, positive, negative, {"samples": samples})


def test_with_the_cache_off_nothing_is_written(comfyui, user_dir, sd3_inputs):
    model, positive, negative, latent = sd3_inputs
    calibrate(comfyui, model, positive, negative, latent, use_cache=False)
    assert not list((user_dir / "flowanime" / "schedules").glob("*.json"))


@pytest.mark.parametrize("change, message", [
    (dict(steps=1), "'steps' must be between 2"),
    (dict(order=5), "'order' must be 1, 2 or 3"),
    (dict(teacher_log10_rtol=-9.0), "'teacher_log10_rtol'"),
    (dict(sigma_floor=0.5), "'sigma_floor'"),
])
def test_bad_settings_are_named_before_any_model_call(comfyui, user_dir, sd3_inputs, change, message):
    model, positive, negative, latent = sd3_inputs
    counted, calls = observed_calls(model)
    with pytest.raises(ValueError, match=message):
        calibrate(comfyui, counted, positive, negative, latent, **change)
    assert calls == []


def test_out_of_range_setting_in_a_graph_is_refused_by_name(comfyui, user_dir):
    graph, _, schedule_id = calibrated_graph("sd3")
    graph[schedule_id]["inputs"]["teacher_log10_rtol"] = -1.0
    with pytest.raises(kit.GraphInvalid, match="teacher_log10_rtol"):
        comfyui.run(graph)


def test_the_cache_keeps_the_most_recently_used_schedules(comfyui, user_dir, sd3_inputs, monkeypatch):
    """The cache is bounded: a write deletes the least recently used schedules beyond the bound and the
    partial writes of killed processes, a read counts as a use, and files the cache did not name (or a
    write in progress) are left alone."""
    import os

    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    monkeypatch.setattr(cal, "MAX_CACHED_SCHEDULES", 3)
    model, positive, negative, latent = sd3_inputs
    folder = user_dir / "flowanime" / "schedules"
    folder.mkdir(parents=True)
    stale = [folder / f"{i:064x}.json" for i in range(4)]
    for age, path in enumerate(stale):
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (1e9 + age, 1e9 + age))  # stale[3] is the newest
    kept_anyway = [folder / "notes.txt", folder / f"{0:064x}.json.bak", folder / f"{5:064x}.77.partial"]
    for path in kept_anyway:
        path.write_text("mine", encoding="utf-8")
        os.utime(path, (1, 1))
    os.utime(kept_anyway[-1])  # a write in progress in another ComfyUI
    killed_write = folder / f"{6:064x}.78.partial"  # left by a process killed while writing, long ago
    killed_write.write_text("{", encoding="utf-8")
    os.utime(killed_write, (1, 1))
    sigmas, report = calibrate(comfyui, model, positive, negative, latent, cfg=3.0)
    names = {p.name for p in folder.iterdir()}
    written = names - {p.name for p in stale + kept_anyway}
    assert len(written) == 1 and names == written | {stale[2].name, stale[3].name} | {p.name for p in kept_anyway}
    os.utime(folder / written.pop(), (1e9 - 1, 1e9 - 1))  # the new schedule looks oldest, until it is read
    assert "read from the cache" in calibrate(comfyui, model, positive, negative, latent, cfg=3.0)[1]
    calibrate(comfyui, model, positive, negative, latent, cfg=3.5)
    remaining = {p.name for p in folder.glob("*.json")}
    assert stale[2].name not in remaining and len(remaining) == 3
    assert "read from the cache" in calibrate(comfyui, model, positive, negative, latent, cfg=3.0)[1]


def test_a_cache_write_leaves_no_partial_file(comfyui, user_dir, sd3_inputs, monkeypatch):
    """The schedule is written beside its name and renamed over it: a second ComfyUI reading the
    same user directory sees the whole file or none. A failed write leaves nothing behind."""
    import os

    cal = comfyui.pack_submodule("comfy_adapter.calibration")
    model, positive, negative, latent = sd3_inputs
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(cal.os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b))[1])
    calibrate(comfyui, model, positive, negative, latent, cfg=2.5)
    folder = user_dir / "flowanime" / "schedules"
    (path,) = folder.iterdir()
    assert [b for _, b in renames] == [path] and json.loads(path.read_text(encoding="utf-8"))["sigmas"][-1] == 0.0

    def full_disk(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cal.os, "replace", full_disk)
    calibrate(comfyui, model, positive, negative, latent, cfg=2.0)  # a warning, and the schedule
    assert list(folder.iterdir()) == [path]


def test_the_teacher_shows_the_model_sigmas_as_many_as_the_schedule_has(comfyui, user_dir, sd3_inputs):
    """ComfyUI hands the sigmas to the model as transformer_options["sample_sigmas"], and a UNet compiled
    by TorchCompileModel guards on their length: the teacher's are as many as the schedule it makes
    (steps + 1), so sampling on that schedule compiles nothing again (a review saw one recompile)."""
    model, positive, negative, latent = sd3_inputs
    lengths = []
    observed = model.clone()

    def wrapper(apply_model, args):
        lengths.append(len(args["c"]["transformer_options"]["sample_sigmas"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    observed.set_model_unet_function_wrapper(wrapper)
    sigmas, _ = calibrate(comfyui, observed, positive, negative, latent, use_cache=False, steps=6)
    assert len(sigmas) == 7 and set(lengths) == {7}
