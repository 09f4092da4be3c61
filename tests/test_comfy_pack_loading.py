"""The pack loads in the real ComfyUI like any custom node pack, cleanly, and its tiny stand-in
models are detected by ComfyUI itself as the families they stand in for."""

import logging

import flowanime_testkit as kit


def test_comfyui_loader_loads_the_pack_without_warnings(comfyui):
    assert comfyui.pack_loaded, "nodes.load_custom_node returned False"
    noisy = [r.getMessage() for r in comfyui.load_records if r.levelno >= logging.WARNING]
    assert noisy == []


def test_every_node_is_namespaced_categorised_and_named(comfyui):
    ours = comfyui.our_node_ids()
    assert ours, "no FlowAnime nodes registered"
    for node_id in ours:
        cls = comfyui.node_class(node_id)
        assert cls.CATEGORY.startswith("FlowAnime/"), node_id
        assert "(FlowAnime)" in comfyui.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id], node_id
        assert isinstance(cls.INPUT_TYPES(), dict)
        assert cls.DESCRIPTION


def test_tiny_unet_is_detected_as_sd15_eps(comfyui):
    import comfy.model_base
    import comfy.supported_models

    (model,) = comfyui.node_class("UNETLoader")().load_unet(kit.SD15_UNET, "default")
    assert type(model.model.model_config) is comfy.supported_models.SD15
    assert model.model.model_type == comfy.model_base.ModelType.EPS


def test_tiny_mmdit_is_detected_as_sd3_flow(comfyui):
    import comfy.model_base
    import comfy.supported_models

    (model,) = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")
    assert type(model.model.model_config) is comfy.supported_models.SD3
    assert model.model.model_type == comfy.model_base.ModelType.FLOW


def test_every_core_node_module_imported_in_the_harness(comfyui):
    """The harness boots ComfyUI as main.py does: no comfy_extras module fails to import."""
    import nodes

    for name in ("ImageScale", "SaveLatent", "SamplerCustomAdvanced", "ImageCrop"):
        assert name in nodes.NODE_CLASS_MAPPINGS, name
