"""Contracts with newer ComfyUI (0.38.x), run on the 0.3.64 checkout.

Where 0.3.64 lacks the newer code, a stand-in does exactly what the cited newer file does:
- comfy_extras/nodes_model_advanced.py@691e827 ModelNoiseScale: rebuild as type(original)(model_config),
  set_parameters(shift=original.shift, multiplier=original.multiplier), set_noise_scale(...);
- comfy/model_sampling.py@2fd2083 ModelSamplingAV: a flow sampling with an audio_shift;
- comfy/latent_formats.py@75399d7: latent formats with spacial_downscale_ratio 16 and 32;
- comfy/sample.py fix_empty_latent_channels (as nodes_custom_sampler.py@4be318a calls it): an empty
  latent tagged with another ratio is resized to the model's;
- execution.py@04e2a91 PromptExecutor(server, cache_type, cache_args, asset_manager);
- nodes.py@02217e3 loaders with an optional `device` widget (TripleCLIPLoader gains one);
- comfy/model_detection.py@0b61ce5: Anima is a Cosmos-Predict2-shaped DiT with llm_adapter weights;
- comfy/model_management.py@a7631e3: InterruptProcessingException derives from BaseException.
"""

import copy
import json
from types import SimpleNamespace

import flowanime_testkit as kit
import pytest
import torch
from conftest import PACK_ROOT

PATCH, PATCH_DEFAULTS = kit.PATCH, kit.PATCH_DEFAULTS
LATENT_NODE = "FlowAnimeEmptyLatentForModel"
OUR_SAMPLERS = ("flowanime_dopri5", "flowanime_bosh3", "flowanime_adams_pc", "flowanime_flow_adams_pc",
               "flowanime_flow_multistep")


def load_unet(comfyui, name):
    return comfyui.node_class("UNETLoader")().load_unet(name, "default")[0]


def flow_patch(comfyui, model, **overrides):
    return comfyui.node_class(PATCH)().patch(model, **{**PATCH_DEFAULTS, **overrides})[0]


def model_noise_scale_as_newer_core(model, noise_scale):
    """ModelNoiseScale.patch of comfy_extras/nodes_model_advanced.py@691e827, statement for statement."""
    m = model.clone()
    original = m.get_model_object("model_sampling")
    ms = type(original)(m.model.model_config)
    ms.set_parameters(shift=original.shift, multiplier=original.multiplier)
    ms.set_noise_scale(noise_scale)
    m.add_object_patch("model_sampling", ms)
    return m


class KnownVelocity(torch.nn.Module):
    """Stands in for the network: a fixed function of x; records the timesteps it is fed."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.timesteps = []

    def forward(self, x, timesteps, **kwargs):
        self.timesteps.append(timesteps.detach().clone())
        return 0.5 * torch.cos(x) - 0.25


def denoise(patched, x, sigma, context):
    import comfy.model_management

    probe = KnownVelocity()
    m = patched.clone()
    m.add_object_patch("diffusion_model", probe)
    comfy.model_management.load_models_gpu([m])
    try:
        return m.model.apply_model(x, sigma, c_crossattn=context), probe.timesteps[-1]
    finally:
        m.unpatch_model()


# --- 1. the model-sampling contract -------------------------------------------------------------


@pytest.mark.parametrize("family, unet, channels, context_dim", [("sd15", kit.SD15_UNET, 4, 768), ("sd3", kit.SD3_MMDIT, 16, 4096)])
@pytest.mark.parametrize("convention, velocity", [("sigma", "noise - data"), ("1 - sigma", "data - noise")])
def test_core_style_rebuild_gives_the_same_sigmas_and_denoised(comfyui, family, unet, channels, context_dim,
                                                                convention, velocity):
    import comfy.samplers

    ours = flow_patch(comfyui, load_unet(comfyui, unet), shift=3.5, timestep_multiplier="custom", custom_multiplier=500.0,
                      timestep_convention=convention, velocity=velocity)
    rebuilt = model_noise_scale_as_newer_core(ours, 1.0)
    a, b = ours.get_model_object("model_sampling"), rebuilt.get_model_object("model_sampling")
    assert type(a) is type(b) and a is not b
    assert (b.shift, b.multiplier, b.noise_scale) == (3.5, 500.0, 1.0)
    assert (b.schedule.timestep_convention, b.schedule.velocity_convention) == (convention, velocity)
    assert torch.equal(a.sigmas, b.sigmas)
    for scheduler in comfy.samplers.SCHEDULER_NAMES:
        assert torch.equal(comfy.samplers.calculate_sigmas(a, scheduler, 9), comfy.samplers.calculate_sigmas(b, scheduler, 9))
    gen = torch.Generator().manual_seed(5)
    x = torch.randn((2, channels, 8, 8), generator=gen)
    sigma = torch.tensor([0.8, 0.3])
    context = torch.randn((2, 77, context_dim), generator=gen)
    (da, ta), (db, tb) = denoise(ours, x, sigma, context), denoise(rebuilt, x, sigma, context)
    assert torch.equal(da, db) and torch.equal(ta, tb)
    # and they are our conventions, not ComfyUI's defaults
    v = 0.5 * torch.cos(x) - 0.25
    s = sigma.view(2, 1, 1, 1)
    assert torch.allclose(db, x - v * s if velocity == "noise - data" else x + v * s, atol=1e-6)
    assert torch.allclose(tb.float(), (sigma if convention == "sigma" else 1 - sigma) * 500.0, atol=1e-3)


def test_noise_scale_is_carried_not_reset_to_one(comfyui):
    # A family whose config declares a noise scale (newer ComfyUI: sampling_settings["noise_scale"]).
    base = load_unet(comfyui, kit.SD3_MMDIT)
    base.model.model_config = copy.copy(base.model.model_config)
    base.model.model_config.sampling_settings = {**base.model.model_config.sampling_settings, "noise_scale": 8.0}
    ours = flow_patch(comfyui, base, shift=3.0)
    assert ours.get_model_object("model_sampling").noise_scale == 8.0
    # a core-style rebuild keeps it from the config, and sets what it is told
    assert model_noise_scale_as_newer_core(ours, 7.5).get_model_object("model_sampling").noise_scale == 7.5
    # a noise scale set upstream survives our patch (as ModelSamplingSD3@691e827 copies it)
    upstream = model_noise_scale_as_newer_core(flow_patch(comfyui, load_unet(comfyui, kit.SD3_MMDIT)), 5.0)
    assert flow_patch(comfyui, upstream, shift=2.0).get_model_object("model_sampling").noise_scale == 5.0


def test_audio_video_model_sampling_is_refused_with_a_clear_message(comfyui):
    import comfy.model_sampling as cms

    class ModelSamplingAV(cms.ModelSamplingDiscreteFlow, cms.CONST):
        """comfy/model_sampling.py@2fd2083's ModelSamplingAV: flow sampling plus an audio shift."""

        def __init__(self, model_config=None):
            super().__init__(model_config)
            self.audio_shift = 2.0

    model = load_unet(comfyui, kit.SD3_MMDIT).clone()
    model.add_object_patch("model_sampling", ModelSamplingAV(model.model.model_config))
    with pytest.raises(ValueError, match="samples audio and video together"):
        flow_patch(comfyui, model)


# --- 2. latent size from the model's downscale ratio ----------------------------------------------


def with_downscale(model, ratio):
    """The model with a latent format of another spatial downscale, through an object patch."""
    fmt = copy.copy(model.get_model_object("latent_format"))
    fmt.spacial_downscale_ratio = ratio
    m = model.clone()
    m.add_object_patch("latent_format", fmt)
    return m


def fix_empty_latent_as_newer_core(model, latent_image, downscale_ratio_spacial):
    """The spatial part of comfy/sample.py's fix_empty_latent_channels (newer ComfyUI)."""
    import comfy.utils

    model_ratio = getattr(model.get_model_object("latent_format"), "spacial_downscale_ratio", 8)  # LatentFormat's default
    if torch.count_nonzero(latent_image) == 0 and downscale_ratio_spacial is not None \
            and downscale_ratio_spacial != model_ratio:
        ratio = downscale_ratio_spacial / model_ratio
        latent_image = comfy.utils.common_upscale(latent_image, round(latent_image.shape[-1] * ratio),
                                                  round(latent_image.shape[-2] * ratio), "nearest-exact", crop="disabled")
    return latent_image


@pytest.mark.parametrize("unet, channels, ratio", [(kit.SD15_UNET, 4, 16), (kit.SD15_UNET, 4, 32), (kit.SD3_MMDIT, 16, 16),
                                                   (kit.SD3_MMDIT, 16, 32), (kit.SD3_MMDIT, 16, None)])
def test_empty_latent_uses_the_models_downscale_and_tags_it(comfyui, unet, channels, ratio):
    model = load_unet(comfyui, unet)
    if ratio is not None:
        model = with_downscale(model, ratio)
    latent, w, h = comfyui.node_class(LATENT_NODE)().generate(model, "custom", 1024, 768, 2)
    down = ratio or 8  # 0.3.64's formats declare none: 8, as newer ComfyUI's LatentFormat default
    assert (w, h) == (1024, 768)
    assert latent["samples"].shape == (2, channels, 768 // down, 1024 // down)
    assert latent["downscale_ratio_spacial"] == down
    # what newer samplers do with the tag: nothing, since it is the model's own ratio
    assert fix_empty_latent_as_newer_core(model, latent["samples"], down).shape == latent["samples"].shape
    # while an untagged 8x latent for a ratio-16/32 model would be 2-4x too large per side
    if ratio:
        assert fix_empty_latent_as_newer_core(model, torch.zeros((1, channels, 96, 128)), 8).shape[-1] == 128 * 8 // ratio


def with_format(model, name):
    """The model with one of ComfyUI's own latent formats (0.3.64's classes, which declare no ratio)."""
    import comfy.latent_formats

    m = model.clone()
    m.add_object_patch("latent_format", getattr(comfy.latent_formats, name)())
    return m


@pytest.mark.parametrize("name, shape", [
    ("LTXV", (1, 128, 1, 32, 32)),  # ComfyUI's own EmptyLTXVLatentVideo: ÷32, one frame
    ("Wan22", (1, 48, 1, 64, 64)),  # ÷16
    ("HunyuanImage21", (1, 64, 32, 32)),  # ÷32
    ("ChromaRadiance", (1, 3, 1024, 1024)),  # pixel space
    ("Flux", (1, 16, 128, 128)),  # ÷8, as before
])
def test_formats_0364_does_not_declare_get_newer_comfyuis_ratio(comfyui, name, shape):
    """0.3.64's formats carry no downscale: the ones that are not 8x per side get the ratio newer
    ComfyUI declares for them (latent_formats.py@75399d7), not a latent 4x too large."""
    import comfy.latent_formats

    if hasattr(getattr(comfy.latent_formats, name, None), "spacial_downscale_ratio") or not hasattr(comfy.latent_formats, name):
        pytest.skip(f"this ComfyUI declares {name}'s ratio itself (or lacks it)")
    model = with_format(load_unet(comfyui, kit.SD3_MMDIT), name)
    latent = comfyui.node_class(LATENT_NODE)().generate(model, "custom", 1024, 1024, 1)[0]
    assert tuple(latent["samples"].shape) == shape and latent["downscale_ratio_spacial"] == 1024 // shape[-1]


@pytest.mark.parametrize("name", ["StableAudio1", "Hunyuan3Dv2", "ACEAudio", "SC_Prior", "SC_B"])
def test_latents_that_are_not_images_are_refused_with_the_node_to_use(comfyui, name):
    model = with_format(load_unet(comfyui, kit.SD3_MMDIT), name)
    with pytest.raises(ValueError, match="Use ComfyUI's own empty-latent node"):
        comfyui.node_class(LATENT_NODE)().generate(model, "custom", 1024, 1024, 1)


@pytest.mark.parametrize("name, base", [("LTXAV", "LTXV"), ("MiniMaxH3AV", "LatentFormat"), ("TripoSplat", "LatentFormat"),
                                        ("Trellis2", "LatentFormat")])
def test_newer_latents_that_are_not_images_are_refused(comfyui, name, base):
    """Formats of newer ComfyUI (latent_formats.py@75399d7, @9a9a69f) that look like image latents
    (two dimensions by default) but are packed audio-video or 3-D: stand-ins of the same class names."""
    import comfy.latent_formats

    fmt = type(name, (getattr(comfy.latent_formats, base),), {})()
    model = load_unet(comfyui, kit.SD3_MMDIT).clone()
    model.add_object_patch("latent_format", fmt)
    with pytest.raises(ValueError, match="Use ComfyUI's own empty-latent node"):
        comfyui.node_class(LATENT_NODE)().generate(model, "custom", 1024, 1024, 1)


@pytest.mark.parametrize("ratio, width, message", [(16, 1000, "multiple of 16"), (32, 1040, "multiple of 32")])
def test_size_checks_follow_the_downscale(comfyui, ratio, width, message):
    model = with_downscale(load_unet(comfyui, kit.SD15_UNET), ratio)
    with pytest.raises(ValueError, match=message):
        comfyui.node_class(LATENT_NODE)().generate(model, "custom", width, 1024, 1)


def test_resolution_shift_reads_the_latents_own_downscale(comfyui):
    model = with_downscale(load_unet(comfyui, kit.SD3_MMDIT), 16)
    latent = comfyui.node_class(LATENT_NODE)().generate(model, "custom", 1024, 1024, 1)[0]
    assert latent["samples"].shape[-1] == 64
    ms = flow_patch(comfyui, model, shift=3.0, resolution_shift="sd3", base_resolution=512, latent=latent)
    assert ms.get_model_object("model_sampling").shift == pytest.approx(3.0 * 2.0)  # 1024 px is 2x 512 per side


# --- 3. test kit: executor and UI-to-API conversion across versions ---------------------------------


class OldExecutor:
    def __init__(self, server, cache_type=False, cache_size=None):  # 0.3.64
        self.args = dict(server=server, cache_type=cache_type, cache_size=cache_size)


class NewExecutor:
    def __init__(self, server, cache_type=False, cache_args=None, asset_manager=None):  # execution.py@04e2a91
        self.args = dict(server=server, cache_type=cache_type, cache_args=cache_args, asset_manager=asset_manager)
        self.headroom = (cache_args["ram"], cache_args["ram_inactive"])  # what execute_async reads


def test_executor_is_built_for_either_signature():
    server = object()
    old = kit.make_executor(OldExecutor, server)
    assert old.args == dict(server=server, cache_type=False, cache_size=None)
    new = kit.make_executor(NewExecutor, server)
    assert new.args["cache_type"] is False and new.headroom == (0, 0) and new.args["asset_manager"] is None


def triple_clip_loader(with_device):
    required = {f"clip_name{i}": (["a.safetensors", "b.safetensors"],) for i in (1, 2, 3)}
    optional = {"device": (["default", "cpu"], {"advanced": True})} if with_device else {}
    return type("TripleCLIPLoader", (), {"INPUT_TYPES": classmethod(lambda cls: {"required": required, "optional": optional}),
                                          "RETURN_TYPES": ("CLIP",)})


def one_node_workflow(values, node_type="TripleCLIPLoader"):
    return {"links": [], "nodes": [{"id": 1, "type": node_type, "inputs": [], "widgets_values": values}]}


def test_ui_to_api_opens_a_workflow_saved_on_either_version():
    old, new = triple_clip_loader(False), triple_clip_loader(True)
    saved_old = one_node_workflow(["a.safetensors", "b.safetensors", "a.safetensors"])
    saved_new = one_node_workflow(["a.safetensors", "b.safetensors", "a.safetensors", "cpu"])
    names = {"clip_name1": "a.safetensors", "clip_name2": "b.safetensors", "clip_name3": "a.safetensors"}
    # old file, new ComfyUI: the widget it lacks gets its default, as the graph editor gives it
    assert kit.ui_to_api(saved_old, {"TripleCLIPLoader": new})["1"]["inputs"] == {**names, "device": "default"}
    # new file, old ComfyUI: the value for a widget this ComfyUI does not have is ignored
    assert kit.ui_to_api(saved_new, {"TripleCLIPLoader": old})["1"]["inputs"] == names
    assert kit.ui_to_api(saved_new, {"TripleCLIPLoader": new})["1"]["inputs"] == {**names, "device": "cpu"}
    # still strict where it matters: a missing required value, a leftover on one of our nodes
    with pytest.raises(AssertionError, match="no widget value left for 'clip_name3'"):
        kit.ui_to_api(one_node_workflow(["a.safetensors", "b.safetensors"]), {"TripleCLIPLoader": new})
    ours = {"FlowAnimeX": triple_clip_loader(False)}
    with pytest.raises(AssertionError, match="left over"):
        kit.ui_to_api(one_node_workflow(["a.safetensors"] * 4, "FlowAnimeX"), ours)


def test_bundled_workflows_validate_with_the_newer_loader_widgets(comfyui, monkeypatch):
    """Every bundled workflow through the conversion and ComfyUI's validator, with TripleCLIPLoader
    given the optional `device` widget it has in newer ComfyUI."""
    real = comfyui.node_class("TripleCLIPLoader")
    spec = real.INPUT_TYPES()

    class TripleCLIPLoaderWithDevice:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": spec["required"], "optional": {"device": (["default", "cpu"], {"advanced": True})}}

        RETURN_TYPES = ("CLIP",)
        FUNCTION = "load_clip"
        CATEGORY = "advanced/loaders"

    monkeypatch.setitem(comfyui.nodes.NODE_CLASS_MAPPINGS, "TripleCLIPLoader", TripleCLIPLoaderWithDevice)
    for path in sorted((PACK_ROOT / "example_workflows").glob("*.json")):
        workflow = json.loads(path.read_text(encoding="utf-8"))
        for node in workflow["nodes"]:  # empty files with the names the workflow uses: validation checks names
            if node["type"] in kit.FRONTEND_ONLY_NODES:
                continue
            names = []
            for name, kind, options, is_widget in kit.input_specs(comfyui.node_class(node["type"])):
                if is_widget:
                    names += [name, "control"] if kit.has_control_widget(name, kind, options) else [name]
            for name, value in zip(names, node["widgets_values"]):
                if name in kit.MODEL_FOLDERS and value:
                    target = comfyui.models_dir / kit.MODEL_FOLDERS[name] / value
                    if not target.exists():
                        target.write_bytes(b"")
        api = kit.ui_to_api(workflow, comfyui.nodes.NODE_CLASS_MAPPINGS)
        loaders = [n for n in api.values() if n["class_type"] == "TripleCLIPLoader"]
        assert all(n["inputs"]["device"] == "default" for n in loaders)
        valid, error, _, node_errors = comfyui.validate(api)
        assert valid, (path.name, error, node_errors)


# --- 4. Anima on a ComfyUI without Anima support ------------------------------------------------------


def tiny_anima_state_dict(with_adapter=True):
    """The keys ComfyUI's detection reads, at toy width: a Cosmos-Predict2-shaped DiT (in_channels 16,
    model_channels 256), plus the LLM-adapter weight that makes it Anima (model_detection.py@0b61ce5)."""
    sd = {"x_embedder.proj.1.weight": torch.zeros(256, (16 + 1) * 4), "blocks.0.mlp.layer1.weight": torch.zeros(1024, 256)}
    if with_adapter:
        sd["llm_adapter.blocks.0.cross_attn.q_proj.weight"] = torch.zeros(8, 8)
    return sd


class Config:
    unet_config = {"image_model": "cosmos_predict2"}


def test_detection_wrapper_marks_anima_loaded_as_something_else():
    from flowanime.comfy_adapter import models

    config, anima_config = Config(), Config()
    anima_config.unet_config = {"image_model": "anima"}
    wrapped = models.wrap_model_detection(lambda sd, prefix, *a, **k: config)
    assert wrapped(tiny_anima_state_dict(False), "") is config and models.unsupported_family(config) is None
    assert wrapped(tiny_anima_state_dict(True), "") is config and models.unsupported_family(config) == "Anima"
    in_checkpoint, prefix = Config(), "model.diffusion_model."
    wrapped_checkpoint = models.wrap_model_detection(lambda sd, prefix, *a, **k: in_checkpoint)
    wrapped_checkpoint({prefix + k: v for k, v in tiny_anima_state_dict().items()}, prefix)
    assert models.unsupported_family(in_checkpoint) == "Anima"
    supported = models.wrap_model_detection(lambda sd, prefix, *a, **k: anima_config)
    assert supported(tiny_anima_state_dict(True), "") is anima_config and models.unsupported_family(anima_config) is None
    with pytest.raises(RuntimeError, match="Update ComfyUI to a version with Anima support"):
        models.require_supported_model(SimpleNamespace(model=SimpleNamespace(model_config=config)))


def test_a_second_copy_of_the_pack_sees_what_the_first_copys_load_check_marked():
    """Two copies in custom_nodes/: model detection is wrapped once, by the first, while the nodes
    ComfyUI runs are the second's. The mark must reach them, or an Anima file samples garbage."""
    import importlib.util

    def copy_of_models(name):
        spec = importlib.util.spec_from_file_location(name, PACK_ROOT / "comfy_adapter" / "models.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    first, second = copy_of_models("flowanime_copy_1_models"), copy_of_models("flowanime_copy_2_models")
    config = Config()
    first.wrap_model_detection(lambda sd, prefix, *a, **k: config)(tiny_anima_state_dict(True), "")
    assert second.unsupported_family(config) == "Anima"
    with pytest.raises(RuntimeError, match="Update ComfyUI to a version with Anima support"):
        second.require_supported_model(SimpleNamespace(model=SimpleNamespace(model_config=config)))
    assert second.unsupported_family(Config()) is None and second.unsupported_family(None) is None


@pytest.fixture(scope="module")
def anima_on_old_comfyui(comfyui):
    from safetensors.torch import save_file

    if comfyui.pack_submodule("comfy_adapter.models").comfyui_supports_anima():
        pytest.skip("this ComfyUI supports Anima: nothing to refuse")
    save_file(tiny_anima_state_dict(True), str(comfyui.models_dir / "diffusion_models" / "flowanime_tiny_anima.safetensors"))
    save_file(tiny_anima_state_dict(False), str(comfyui.models_dir / "diffusion_models" / "flowanime_tiny_cosmos2.safetensors"))
    return load_unet(comfyui, "flowanime_tiny_anima.safetensors"), load_unet(comfyui, "flowanime_tiny_cosmos2.safetensors")


def test_anima_loaded_as_cosmos_stops_in_our_nodes(comfyui, anima_on_old_comfyui):
    import comfy.model_base

    anima, cosmos = anima_on_old_comfyui
    assert isinstance(anima.model, comfy.model_base.CosmosPredict2)  # what 0.3.64 makes of it
    message = "Update ComfyUI to a version with Anima support"
    with pytest.raises(RuntimeError, match=message):
        flow_patch(comfyui, anima, timestep_multiplier="1")
    with pytest.raises(RuntimeError, match=message):
        comfyui.node_class(LATENT_NODE)().generate(anima, "1024x1024 (1:1)", 0, 0, 1)
    sampler = comfyui.pack_submodule("comfy_adapter.samplers").comfy_sampler_function(
        comfyui.pack_submodule("samplers.k_sampler").SamplerConfig())
    k_model = SimpleNamespace(inner_model=SimpleNamespace(inner_model=anima.model))
    with pytest.raises(RuntimeError, match=message):
        sampler(k_model, torch.zeros((1, 16, 1, 8, 8)), torch.tensor([1.0, 0.0]))
    # plain Cosmos-Predict2 is not Anima: our nodes work on it
    assert flow_patch(comfyui, cosmos, timestep_multiplier="1") is not None
    assert comfyui.node_class(LATENT_NODE)().generate(cosmos, "1024x1024 (1:1)", 0, 0, 1)[0]["samples"].shape == (1, 16, 1, 128, 128)


def test_anima_graph_fails_with_the_message_not_garbage(comfyui, anima_on_old_comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name="flowanime_tiny_anima.safetensors", weight_dtype="default").out(0)
    patched = g.node(PATCH, model=model, **{**PATCH_DEFAULTS, "timestep_multiplier": "1"}).out(0)
    latent = g.node(LATENT_NODE, model=patched, preset="custom", width=64, height=64, batch_size=1).out(0)
    g.node("SaveLatent", samples=latent, filename_prefix="latents/anima")
    result = comfyui.run(g.finalize(), expect_success=False)
    assert not result.success and "Update ComfyUI to a version with Anima support" in result.error["exception_message"]


# --- 5. sampler registration in every sampler-list consumer ----------------------------------------


@pytest.mark.parametrize("node_type", ["KSampler", "KSamplerAdvanced", "KSamplerSelect"])
def test_our_samplers_are_offered_by_every_sampler_list(comfyui, node_type):
    specs = {name: options for name, _kind, options, _w in kit.input_specs(comfyui.node_class(node_type))}
    assert set(OUR_SAMPLERS) <= set(specs["sampler_name"]["options"])


def test_ksampler_select_validates_and_samples_with_our_entry(comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=kit.SD3_MMDIT, weight_dtype="default").out(0)
    patched = g.node(PATCH, model=model, **PATCH_DEFAULTS).out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="sd3").out(0)
    cond = g.node("CLIPTextEncode", clip=clip, text="1girl").out(0)
    guider = g.node("CFGGuider", model=patched, positive=cond, negative=cond, cfg=3.0).out(0)
    sigmas = g.node("BasicScheduler", model=patched, scheduler="simple", steps=4, denoise=1.0).out(0)
    sampler = g.node("KSamplerSelect", sampler_name="flowanime_adams_pc").out(0)
    latent = g.node(LATENT_NODE, model=patched, preset="custom", width=64, height=64, batch_size=1).out(0)
    noise = g.node("RandomNoise", noise_seed=1).out(0)
    samples = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                     latent_image=latent).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix="latents/select")
    out = comfyui.saved_latent(comfyui.run(g.finalize()), save.id)
    assert out.shape == (1, 16, 8, 8) and torch.isfinite(out).all()


def test_a_v3_sampler_select_lists_and_resolves_our_entries(comfyui):
    """Newer ComfyUI's KSamplerSelect is a V3 node (nodes_custom_sampler.py@4be318a): its schema's
    io.Combo takes comfy.samplers.SAMPLER_NAMES, and execute() calls sampler_object(name). The same
    schema on 0.3.64's V3 API (which builds the schema on every INPUT_TYPES call)."""
    import comfy.samplers
    from comfy_api.latest import io

    class KSamplerSelectV3(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="FlowAnimeTestKSamplerSelectV3", category="sampling/custom_sampling/samplers",
                             inputs=[io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES)],
                             outputs=[io.Sampler.Output()])

        @classmethod
        def execute(cls, sampler_name):
            return io.NodeOutput(comfy.samplers.sampler_object(sampler_name))

    kind, options = KSamplerSelectV3.INPUT_TYPES()["required"]["sampler_name"]
    assert set(OUR_SAMPLERS) <= set(kind if isinstance(kind, list) else options["options"])
    for name in OUR_SAMPLERS:
        sampler = comfy.samplers.sampler_object(name)
        assert sampler.sampler_function.flowanime_config.method == name.removeprefix("flowanime_")


def test_compute_dtype_reads_newer_comfyuis_get_dtype_inference_or_0364s_fields(comfyui):
    """comfy/model_base.py@094c74c: BaseModel.get_dtype_inference() (manual_cast_dtype if set, else the
    weights' dtype). 0.3.64 lacks it: the adapter reads the same two fields."""
    samplers = comfyui.pack_submodule("comfy_adapter.samplers")

    def chain(base):  # KSamplerX0Inpaint -> guider -> BaseModel, as KSAMPLER passes it
        return SimpleNamespace(inner_model=SimpleNamespace(inner_model=base))

    newer = SimpleNamespace(get_dtype_inference=lambda: torch.bfloat16, manual_cast_dtype=None,
                            get_dtype=lambda: torch.float32)
    cast = SimpleNamespace(manual_cast_dtype=torch.float16, get_dtype=lambda: torch.float32)
    plain = SimpleNamespace(manual_cast_dtype=None, get_dtype=lambda: torch.bfloat16)
    assert [samplers.compute_dtype(chain(b)) for b in (newer, cast, plain)] == [torch.bfloat16, torch.float16, torch.bfloat16]
    assert samplers.compute_dtype(SimpleNamespace()) is None  # not KSAMPLER's chain


def test_an_interrupt_that_is_a_base_exception_stops_calibration_and_sampling(comfyui, tmp_path, monkeypatch):
    """comfy/model_management.py@a7631e3 makes InterruptProcessingException a BaseException (0.3.64: an
    Exception): it must stop the Calibrated Schedule's teacher and a KSampler entry at the call where
    Cancel was pressed, leave no cache file behind, and leave the next run working."""
    import comfy.model_management as mm
    import folder_paths

    class InterruptAsNewerCore(BaseException):
        pass

    monkeypatch.setattr(mm, "InterruptProcessingException", InterruptAsNewerCore)
    monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path / "user"))
    model = flow_patch(comfyui, load_unet(comfyui, kit.SD3_MMDIT), shift=3.0)
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "sd3")[0]
    positive, negative = (comfyui.node_class("CLIPTextEncode")().encode(clip, text)[0] for text in ("1girl", "lowres"))
    latent = {"samples": torch.zeros((1, 16, 8, 8))}
    calls = []

    def cancel_at_third_call(apply_model, args):
        calls.append(1)
        if len(calls) == 3:
            mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    cancelled = model.clone()
    cancelled.set_model_unet_function_wrapper(cancel_at_third_call)
    calibrate = comfyui.node_class("FlowAnimeCalibratedSchedule")().calibrate
    settings = dict(cfg=4.0, steps=6, order=3, draws=1, seed=0, teacher_log10_rtol=-1.5, check=False)
    try:
        for run in (lambda: calibrate(cancelled, positive, negative, latent=latent, **settings),
                    lambda: comfyui.nodes.common_ksampler(cancelled, 3, 8, 4.0, "flowanime_flow_adams_pc", "simple",
                                                          positive, negative, latent)):
            calls.clear()
            with pytest.raises(InterruptAsNewerCore):
                run()
            mm.interrupt_current_processing(False)
            assert len(calls) == 3, "the solve ran on after the interrupt"
        assert not list((tmp_path / "user").rglob("*.json")), "an interrupted calibration left a cache file"
    finally:
        mm.interrupt_current_processing(False)
    sigmas = calibrate(model, positive, negative, latent=latent, **settings)["result"][0]
    assert sigmas.shape == (7,) and torch.isfinite(sigmas).all()
