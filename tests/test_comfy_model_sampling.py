"""The rectified-flow patch inside the real ComfyUI: loaders, nodes, schedulers, samplers, executor."""

import math

import flowanime_testkit as kit
import pytest
import torch

PATCH, PATCH_DEFAULTS, FAMILIES, txt2img = kit.PATCH, kit.PATCH_DEFAULTS, kit.FAMILIES, kit.txt2img


def load_unet(comfyui, name):
    return comfyui.node_class("UNETLoader")().load_unet(name, "default")[0]


def flow_patch(comfyui, model, **overrides):
    return comfyui.node_class(PATCH)().patch(model, **{**PATCH_DEFAULTS, **overrides})[0]


class KnownVelocity(torch.nn.Module):
    """Stands in for the network: returns a fixed function of x and records the timestep it gets."""

    dtype = torch.float32  # ComfyUI's BaseModel asks its diffusion model for this

    def __init__(self):
        super().__init__()
        self.timesteps = []

    @staticmethod
    def velocity(x):
        return 0.5 * torch.cos(x) - 0.25

    def forward(self, x, timesteps, **kwargs):
        self.timesteps.append(timesteps.detach().clone())
        return self.velocity(x)


def denoise_with_known_velocity(comfyui, patched, x, sigma, context):
    import comfy.model_management

    probe = KnownVelocity()
    m = patched.clone()
    m.add_object_patch("diffusion_model", probe)
    comfy.model_management.load_models_gpu([m])
    try:
        denoised = m.model.apply_model(x, sigma, c_crossattn=context)
    finally:
        m.unpatch_model()
    return denoised, probe.timesteps[-1]


# ---------------------------------------------------------------------------------------------


def test_eps_loaded_sd15_becomes_flow_through_the_node_alone(comfyui):
    import comfy.model_sampling

    base = load_unet(comfyui, kit.SD15_UNET)
    assert not isinstance(base.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    ms = flow_patch(comfyui, base, shift=3.5).get_model_object("model_sampling")
    assert isinstance(ms, comfy.model_sampling.CONST)
    assert isinstance(ms, comfy.model_sampling.ModelSamplingDiscreteFlow)
    assert ms.multiplier == 1000.0 and ms.shift == 3.5
    assert float(ms.sigma_max) == 1.0
    # The input model is untouched (ComfyUI models are shared between branches of a graph).
    assert not isinstance(base.get_model_object("model_sampling"), comfy.model_sampling.CONST)


@pytest.mark.parametrize("family", ["sd15", "sd3"])
@pytest.mark.parametrize(
    "convention, velocity",
    [("sigma", "noise - data"), ("1 - sigma", "noise - data"), ("sigma", "data - noise"), ("1 - sigma", "data - noise")],
)
def test_denoised_and_network_timestep_follow_the_conventions(comfyui, family, convention, velocity):
    unet, _, _, channels = FAMILIES[family]
    patched = flow_patch(comfyui, load_unet(comfyui, unet), timestep_convention=convention, velocity=velocity)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((2, channels, 8, 8), generator=gen)
    sigma = torch.tensor([0.8, 0.3])
    context = torch.randn((2, 77, 768 if family == "sd15" else 4096), generator=gen)

    denoised, t = denoise_with_known_velocity(comfyui, patched, x, sigma, context)

    v = KnownVelocity.velocity(x)
    s = sigma.view(2, 1, 1, 1)
    expected = x - v * s if velocity == "noise - data" else x + v * s
    assert torch.equal(denoised, expected)
    expected_t = sigma * 1000 if convention == "sigma" else (1 - sigma) * 1000
    assert torch.allclose(t.float(), expected_t, atol=1e-4, rtol=0)


@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_sigma_table_matches_the_shift_formula(comfyui, shift):
    ms = flow_patch(comfyui, load_unet(comfyui, kit.SD15_UNET), shift=shift).get_model_object("model_sampling")
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    assert torch.allclose(ms.sigmas.double(), shift * t / (1 + (shift - 1) * t), atol=5e-7, rtol=0)  # a few float32 ulps


def test_every_scheduler_gives_comfyuis_own_sd3_sigmas(comfyui):
    """Independent truth: ComfyUI's ModelSamplingSD3 node with the same shift."""
    import comfy.samplers

    model = load_unet(comfyui, kit.SD3_MMDIT)
    ours = flow_patch(comfyui, model, shift=3.0).get_model_object("model_sampling")
    theirs = comfyui.node_class("ModelSamplingSD3")().patch(model, 3.0)[0].get_model_object("model_sampling")
    for scheduler in comfy.samplers.SCHEDULER_NAMES:
        a = comfy.samplers.calculate_sigmas(ours, scheduler, 12)
        b = comfy.samplers.calculate_sigmas(theirs, scheduler, 12)
        assert torch.equal(a, b), scheduler
    for percent in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert ours.percent_to_sigma(percent) == pytest.approx(theirs.percent_to_sigma(percent))


@pytest.mark.parametrize(
    "family, sampler, scheduler",
    [
        ("sd15", "euler", "simple"),
        ("sd15", "heun", "normal"),
        ("sd15", "dpmpp_2m", "beta"),
        ("sd15", "euler_ancestral", "sgm_uniform"),
        ("sd3", "euler", "simple"),
        ("sd3", "dpmpp_2m", "karras"),
        ("sd3", "uni_pc", "normal"),
        ("sd3", "euler_ancestral", "beta"),
    ],
)
def test_ksampler_graph_runs_with_the_patch(comfyui, family, sampler, scheduler):
    graph, save_id = txt2img(family, sampler, scheduler, patch={"shift": 3.0})
    latent = comfyui.saved_latent(comfyui.run(graph), save_id)
    channels = FAMILIES[family][3]
    assert latent.shape == (2, channels, 8, 8)
    assert torch.isfinite(latent).all()
    assert latent.std() > 0


def test_lora_before_and_after_the_patch_gives_the_same_output(comfyui):
    before, id_b = txt2img("sd15", patch={"shift": 3.0}, loras=[kit.SD15_LORA], lora_after_patch=False)
    after, id_a = txt2img("sd15", patch={"shift": 3.0}, loras=[kit.SD15_LORA], lora_after_patch=True)
    plain, id_p = txt2img("sd15", patch={"shift": 3.0})
    lat_before = comfyui.saved_latent(comfyui.run(before), id_b)
    lat_after = comfyui.saved_latent(comfyui.run(after), id_a)
    lat_plain = comfyui.saved_latent(comfyui.run(plain), id_p)
    assert torch.equal(lat_before, lat_after)
    assert not torch.allclose(lat_before, lat_plain, atol=1e-3), "the LoRA had no effect; the test proves nothing"


def test_repatching_an_already_flow_model_replaces_the_schedule(comfyui):
    first = flow_patch(comfyui, load_unet(comfyui, kit.SD3_MMDIT), shift=2.0, timestep_multiplier="custom",
                       custom_multiplier=500.0)
    second = flow_patch(comfyui, first, shift=6.0, timestep_convention="1 - sigma")
    ms = second.get_model_object("model_sampling")
    assert ms.shift == 6.0
    assert ms.multiplier == 1000.0  # "auto" is the family's multiplier, not the previous patch's
    assert ms.schedule.timestep_convention == "1 - sigma"
    assert first.get_model_object("model_sampling").shift == 2.0


def test_composes_with_comfyuis_other_model_patches(comfyui):
    import comfy.model_sampling

    model = load_unet(comfyui, kit.SD15_UNET)
    vpred = comfyui.node_class("ModelSamplingDiscrete")().patch(model, "v_prediction", False)[0]
    flow = flow_patch(comfyui, vpred, shift=3.0)
    assert isinstance(flow.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    rescaled = comfyui.node_class("RescaleCFG")().patch(flow, 0.7)[0]
    assert rescaled.get_model_object("model_sampling") is flow.get_model_object("model_sampling")
    # and a full graph with a core patch after ours
    graph, save_id = txt2img("sd15", patch={"shift": 3.0})
    graph = {k: v for k, v in graph.items()}
    ksampler = next(k for k, v in graph.items() if v["class_type"] == "KSampler")
    patch_id = next(k for k, v in graph.items() if v["class_type"] == PATCH)
    graph["rescale"] = {"class_type": "RescaleCFG", "inputs": {"model": [patch_id, 0], "multiplier": 0.7}}
    graph[ksampler]["inputs"]["model"] = ["rescale", 0]
    assert torch.isfinite(comfyui.saved_latent(comfyui.run(graph), save_id)).all()


def test_cosmos_predict2_patched_at_its_defaults_is_comfyuis_own_flow(comfyui):
    """Cosmos-Predict2 is a rectified flow that ComfyUI samples in EDM sigmas s/(1 - s), feeding the
    network the flow time s itself (COSMOS_RFLOW, model_base.py@094c74c). Our patch with `auto`
    must feed it s too: BaseModel._apply_model's denoised prediction, calculate_denoised(sigma,
    F(calculate_input(sigma, x), timestep(sigma)), x), is then the same at the same point of the path
    for any network F."""
    from safetensors.torch import save_file

    name = "flowanime_tiny_cosmos_predict2.safetensors"  # the keys model detection reads, at toy width
    save_file({"x_embedder.proj.1.weight": torch.zeros(256, (16 + 1) * 4), "blocks.0.mlp.layer1.weight": torch.zeros(1024, 256)},
              str(comfyui.models_dir / "diffusion_models" / name))
    native_model = load_unet(comfyui, name)
    native = native_model.get_model_object("model_sampling")
    ours = flow_patch(comfyui, native_model).get_model_object("model_sampling")
    generator = torch.Generator().manual_seed(0)
    x0, noise, weights = (torch.randn(1, 16, 1, 8, 8, generator=generator) for _ in range(3))

    def network(x, t):  # any map of the input and the time the network is fed
        return torch.tanh(weights * x + 3.0 * t.reshape(-1, 1, 1, 1, 1)) + torch.sin(5.0 * t).reshape(-1, 1, 1, 1, 1)

    def denoised(model_sampling, x, sigma):
        sigma = torch.tensor([sigma])
        return model_sampling.calculate_denoised(sigma, network(model_sampling.calculate_input(sigma, x),
                                                                model_sampling.timestep(sigma)), x)

    for s in (0.1, 0.3, 0.7, 0.95):
        on_the_path = (1 - s) * x0 + s * noise
        theirs = denoised(native, on_the_path / (1 - s), s / (1 - s))  # ComfyUI's latent is x0 + sigma noise
        assert torch.allclose(denoised(ours, on_the_path, s), theirs, rtol=1e-5, atol=1e-5), s

    # Where a noise mask keeps the latent (inpainting, Video2World's given frames), KSamplerX0Inpaint
    # puts scale_latent_inpaint's value there; under both samplings the network must see the same input.
    def kept_region_input(patcher, model_sampling, sigma):
        sigma = torch.tensor([sigma])
        inpaint = patcher.get_model_object("scale_latent_inpaint")
        return model_sampling.calculate_input(sigma, inpaint(x=noise, sigma=sigma, noise=noise, latent_image=x0))

    patched = flow_patch(comfyui, native_model)
    for s in (0.3, 0.7, 0.95):
        theirs = kept_region_input(native_model, native, s / (1 - s))
        assert torch.allclose(theirs, x0, rtol=1e-5, atol=1e-5)  # the clean latent
        assert torch.allclose(kept_region_input(patched, ours, s), theirs, rtol=1e-5, atol=1e-5), s


def test_family_multiplier_comes_from_comfyuis_model_config(comfyui):
    """AuraFlow-style configs (Anima's too, in newer ComfyUI) carry multiplier 1 in sampling_settings."""
    from types import SimpleNamespace

    import comfy.model_base
    import comfy.supported_models

    adapter = comfyui.pack_submodule("comfy_adapter.model_sampling")
    aura = SimpleNamespace(model=SimpleNamespace(model_config=comfy.supported_models.AuraFlow, model_type=comfy.model_base.ModelType.FLOW))
    assert adapter.family_multiplier(aura) == comfy.supported_models.AuraFlow.sampling_settings["multiplier"] == 1.0
    assert adapter.family_multiplier(load_unet(comfyui, kit.SD3_MMDIT)) == 1000.0
    assert adapter.family_multiplier(load_unet(comfyui, kit.SD15_UNET)) == 1000.0
    ms = flow_patch(comfyui, load_unet(comfyui, kit.SD15_UNET), timestep_multiplier="1").get_model_object("model_sampling")
    assert ms.multiplier == 1.0 and float(ms.timestep(torch.tensor(0.5))) == 0.5


@pytest.mark.parametrize("mode, expected", [("sd3", 3.0 * math.sqrt(4.0)), ("flux", 3.0 * math.exp((1.15 - 0.5) / 3840 * (1024 - 256)))])
def test_resolution_shift_is_decided_by_the_latent_size(comfyui, mode, expected):
    model = load_unet(comfyui, kit.SD3_MMDIT)
    latent = {"samples": torch.zeros((1, 16, 64, 64))}  # 512 x 512 pixels = 1024 tokens
    patched = flow_patch(comfyui, model, shift=3.0, resolution_shift=mode, base_resolution=256, latent=latent)
    assert patched.get_model_object("model_sampling").shift == pytest.approx(expected)


def test_resolution_shift_without_a_latent_says_what_to_connect(comfyui):
    with pytest.raises(ValueError, match="connect it to the 'latent' input"):
        flow_patch(comfyui, load_unet(comfyui, kit.SD3_MMDIT), resolution_shift="sd3")


def test_resolution_shift_from_a_latent_without_pixels_says_what_to_connect(comfyui):
    """A 0 x 0 latent was a bare `math domain error` (log of 0 tokens; found by a review helper)."""
    with pytest.raises(ValueError, match="'latent' has no pixels"):
        flow_patch(comfyui, load_unet(comfyui, kit.SD3_MMDIT), resolution_shift="sd3",
                   latent={"samples": torch.zeros((1, 16, 0, 0))})


def test_bad_values_fail_the_graph_with_a_clear_message_not_a_crash(comfyui):
    graph, _ = txt2img("sd15", patch={"timestep_multiplier": "custom", "custom_multiplier": 0.0})
    result = comfyui.run(graph, expect_success=False)
    assert not result.success
    assert "'custom_multiplier' must be a finite number above 0" in result.error["exception_message"]
    # shift below the widget's minimum is refused by ComfyUI's validator, naming the input
    graph, _ = txt2img("sd15", patch={"shift": 0.0})
    valid, error, _, node_errors = comfyui.validate(graph)
    assert not valid and "shift" in str(node_errors)
    # ComfyUI is still usable afterwards
    graph, save_id = txt2img("sd15", patch={"shift": 3.0})
    assert torch.isfinite(comfyui.saved_latent(comfyui.run(graph), save_id)).all()
