"""The prompt normaliser node inside the real ComfyUI."""

import flowanime_testkit as kit
import pytest
import torch


def test_normalizer_feeds_clip_text_encode_in_a_graph(comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    raw = "1girl, karin_(blue_archive), long_hair, masterpiece, ^_^ BREAK by wlop"
    g = GraphBuilder()
    text = g.node("FlowAnimeBooruPromptNormalizer", text=raw, drop_quality_tags=True, artists_to_own_chunk=False,
                  lowercase=False).out(0)
    model = g.node("UNETLoader", unet_name=kit.SD15_UNET, weight_dtype="default").out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="stable_diffusion").out(0)
    positive = g.node("CLIPTextEncode", clip=clip, text=text).out(0)
    negative = g.node("CLIPTextEncode", clip=clip, text="lowres").out(0)
    latent = g.node("EmptyLatentImage", width=64, height=64, batch_size=1).out(0)
    patched = g.node(kit.PATCH, model=model, **kit.PATCH_DEFAULTS).out(0)
    samples = g.node("KSampler", model=patched, seed=1, steps=3, cfg=5.0, sampler_name="euler", scheduler="simple",
                     positive=positive, negative=negative, latent_image=latent, denoise=1.0).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix="latents/prompt")
    result = comfyui.run(g.finalize())
    assert torch.isfinite(comfyui.saved_latent(result, save.id)).all()


def test_wide_commas_reach_clip_as_commas(comfyui):
    """CLIP's tokenizer in ComfyUI reads `，` as other tokens, never the comma; after the normaliser the
    prompt tokenizes as the same list written with commas."""
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]

    def tokens(text):
        return [t for chunk in clip.tokenize(text)["l"] for t, _ in chunk]

    raw = "1girl\uff0clong_hair\uff0cblue_eyes"
    comma = tokens(",")[1]  # after the start token
    assert comma not in tokens(raw)
    normalized = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(raw, False, False, False)["result"][0]
    assert tokens(normalized) == tokens("1girl, long hair, blue eyes")


def test_full_width_letters_reach_clip_as_the_words_they_spell(comfyui):
    """An input method left in full width types `１ｇｉｒｌ`, `ｋ－ｏｎ！` and `：ｄ`: CLIP's tokenizer in ComfyUI reads
    them as byte tokens, none of 1girl's; after the normaliser the prompt tokenizes as its ASCII twin."""
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]

    def tokens(text):
        return [t for chunk in clip.tokenize(text)["l"] for t, _ in chunk]

    raw = ("\uff11\uff47\uff49\uff52\uff4c\uff0c\uff4c\uff4f\uff4e\uff47\uff3f\uff48\uff41\uff49\uff52\uff0c"
           "\uff08\uff53\uff4d\uff49\uff4c\uff45\uff1a\uff11\uff0e\uff12\uff09\uff0c"
           "\uff4b\uff0d\uff4f\uff4e\uff01\uff0c\uff1a\uff44")  # １ｇｉｒｌ，ｌｏｎｇ＿ｈａｉｒ，（ｓｍｉｌｅ：１．２），ｋ－ｏｎ！，：ｄ
    ascii_twin = "1girl, long hair, (smile:1.2), k-on!, :d"
    assert not set(tokens("1girl")[1:3]) & set(tokens(raw))
    normalized = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(raw, False, False, False)["result"][0]
    assert normalized == ascii_twin
    assert [chunk for chunk in clip.tokenize(normalized)["l"]] == [chunk for chunk in clip.tokenize(ascii_twin)["l"]]


def test_normalized_text_is_what_clip_text_encode_receives(comfyui):
    normalized = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(
        "karin_(blue_archive), long_hair", False, False, False)["result"][0]
    assert normalized == "karin \\(blue archive\\), long hair"
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    # ComfyUI's own weight parser sees no emphasis: every token weight is 1.0
    tokens = clip.tokenize(normalized)
    weights = {w for chunk in tokens["l"] for _, w in chunk}
    assert weights == {1.0}
    unescaped = clip.tokenize("karin_(blue_archive), long_hair")
    assert any(w != 1.0 for chunk in unescaped["l"] for _, w in chunk)  # what the escape prevents


def test_groups_around_short_tags_keep_their_weight_in_comfyui(comfyui):
    """`(v, peace_sign:1.2)` opens on a one-letter tag: it stays weight syntax (not an emoticon), and
    ComfyUI's parser gives each of its tokens the weight the user wrote, as it does the raw text."""
    raw = "(v, peace_sign:1.2), (smile, :d:0.8), solo"
    normalized = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(raw, False, False, False)["result"][0]
    assert normalized == "(v, peace sign:1.2), (smile, :d:0.8), solo"
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]

    def weights(text):
        return sorted({round(w, 3) for chunk in clip.tokenize(text)["l"] for _, w in chunk})

    assert weights(normalized) == weights(raw.replace("_", " ")) == [0.8, 1.0, 1.2]


@pytest.mark.parametrize("raw, expected_weights", [
    ("1girl (smile:1.2), solo", [1.0, 1.2]),
    ("(masterpiece:1.3) (best quality:1.1), 1girl", [1.0, 1.1, 1.3]),
    ("(^_^:1.2), (8k), ((hd)), solo", [1.0, 1.1, 1.2, 1.21]),
    ("((a), b), (c, (d:0.8))", [0.8, 1.0, 1.1, 1.21]),
    ("((masterpiece)) ((best quality)), (masterpiece)(solo), 1girl", [1.0, 1.1, 1.21]),
    ("(masterpiece) best quality, 1girl", [1.0, 1.1]),
    ("long_hair\n(blue_eyes:1.2)\n((smile))", [1.0, 1.2, 1.21]),
    ("1girl, (happy, (^_^):1.2), (blue_eyes:1.3), (:3)", [1.0, 1.1, 1.2, 1.3, 1.32]),
    ("(((^_^)), ((year 2024)), (^_^):0.8)", [0.8, 0.88, 0.968, 1.0]),
    ("1girl, ((c.c.)), code geass", [1.0, 1.21]),
    ("1girl, wearing a (red) dress", [1.0, 1.1]),
    ("1girl, (:d), ((;p)), smile", [1.0, 1.1, 1.21]),
    ("1girl, (v), ((w)), smile", [1.0, 1.1, 1.21]),
])
def test_weights_beside_text_and_on_short_words_reach_comfyui_as_written(comfyui, raw, expected_weights):
    """ComfyUI's own parser gives the normaliser's output the weights it gives the raw text."""
    normalized = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(raw, False, False, False)["result"][0]
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]

    def weights(text):
        return sorted({round(w, 3) for chunk in clip.tokenize(text)["l"] for _, w in chunk})

    assert weights(normalized) == weights(raw) == expected_weights
