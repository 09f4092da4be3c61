"""The empty-latent helper with the real ComfyUI models."""

import flowanime_testkit as kit
import pytest
import torch

NODE = "FlowAnimeEmptyLatentForModel"


def unet(comfyui, name):
    return comfyui.node_class("UNETLoader")().load_unet(name, "default")[0]


@pytest.mark.parametrize("name, channels", [(kit.SD15_UNET, 4), (kit.SD3_MMDIT, 16)])
def test_channels_come_from_the_connected_model(comfyui, name, channels):
    latent, w, h = comfyui.node_class(NODE)().generate(unet(comfyui, name), "896x1152 (7:9 portrait)", 0, 0, 2)
    assert (w, h) == (896, 1152)
    assert latent["samples"].shape == (2, channels, 1152 // 8, 896 // 8)
    assert not latent["samples"].any()


def test_sizes_the_family_cannot_take_get_a_clear_error_in_a_graph(comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=kit.SD3_MMDIT, weight_dtype="default").out(0)
    latent = g.node(NODE, model=model, preset="custom", width=1000, height=1024, batch_size=1).out(0)
    g.node("SaveLatent", samples=latent, filename_prefix="latents/bad")
    result = comfyui.run(g.finalize(), expect_success=False)
    assert not result.success
    assert "width 1000 (from 'width') is not a multiple of 16" in result.error["exception_message"]


def test_a_size_off_the_cards_grid_works_with_a_warning(comfyui, caplog):
    """SD3.5's card asks for multiples of 64; the MMDiT takes any multiple of 16 (as ComfyUI's own
    EmptySD3LatentImage does), so 1200 makes a latent and the console says what the card wants."""
    import numpy as np

    with caplog.at_level("WARNING", logger="FlowAnime"):
        latent, w, h = comfyui.node_class(NODE)().generate(unet(comfyui, kit.SD3_MMDIT), "custom", np.int64(1200), 1600.0, 1)
    assert (w, h) == (1200, 1600) and type(w) is int and latent["samples"].shape == (1, 16, 200, 150)
    assert "width 1200 (from 'width'/'height') is not a multiple of 64" in caplog.text and "1152 or 1216" in caplog.text


@pytest.mark.parametrize("preset, width, height, batch, setting", [
    ("custom", 1024, 1024, 0, "batch_size"), ("1024x1024 (1:1)", 0, 0, -1, "batch_size"),
    ("custom", 1024.5, 1024, 1, "width"), ("custom", 1024, 32, 1, "height"), ("custom", 1024, 1024, True, "batch_size"),
])
def test_values_only_the_api_can_send_are_refused_by_name(comfyui, preset, width, height, batch, setting):
    """The editor keeps widgets in range; a graph queued through the API gets the same limits as a
    clear error instead of a torch error from the empty tensor."""
    with pytest.raises(ValueError, match=f"'{setting}' must be a whole number"):
        comfyui.node_class(NODE)().generate(unet(comfyui, kit.SD3_MMDIT), preset, width, height, batch)


def test_latent_feeds_a_sampler(comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=kit.SD15_UNET, weight_dtype="default").out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="stable_diffusion").out(0)
    cond = g.node("CLIPTextEncode", clip=clip, text="1girl").out(0)
    latent = g.node(NODE, model=model, preset="custom", width=64, height=96, batch_size=1).out(0)
    patched = g.node(kit.PATCH, model=model, **kit.PATCH_DEFAULTS).out(0)
    samples = g.node("KSampler", model=patched, seed=1, steps=3, cfg=5.0, sampler_name="flowanime_bosh3",
                     scheduler="simple", positive=cond, negative=cond, latent_image=latent, denoise=1.0).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix="latents/helper")
    out = comfyui.saved_latent(comfyui.run(g.finalize()), save.id)
    assert out.shape == (1, 4, 12, 8) and torch.isfinite(out).all()
