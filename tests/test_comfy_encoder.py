"""The BREAK/chunk-aware encoder with ComfyUI's real tokenizers and tiny random-weight CLIP models."""

from types import SimpleNamespace

import flowanime_testkit as kit
import pytest
import torch

COMMA = 267  # "," in CLIP's vocabulary
NODE = "FlowAnimeCLIPTextEncodeBreak"


@pytest.fixture(scope="module")
def clips(comfyui):
    """SD1.5 and SD3 CLIPs through CLIPLoader; SDXL built from ComfyUI's own SDXL classes with 3 layers
    per encoder (the fewest its penultimate-layer output allows; CLIPLoader would build CLIP-G at full
    depth: 700M parameters)."""
    import comfy.clip_model
    import comfy.sd
    import comfy.sdxl_clip

    load = comfyui.node_class("CLIPLoader")().load_clip
    original = comfy.clip_model.CLIPTextModel.__init__

    def three_layers(self, config_dict, *args, **kwargs):
        original(self, {**config_dict, "num_hidden_layers": 3}, *args, **kwargs)

    comfy.clip_model.CLIPTextModel.__init__ = three_layers
    try:
        target = SimpleNamespace(params={}, clip=comfy.sdxl_clip.SDXLClipModel, tokenizer=comfy.sdxl_clip.SDXLTokenizer)
        sdxl = comfy.sd.CLIP(target)
    finally:
        comfy.clip_model.CLIPTextModel.__init__ = original
    kit.fill_random_(sdxl.cond_stage_model, seed=11)
    return {"sd15": load(kit.CLIP_L, "stable_diffusion")[0], "sdxl": sdxl, "sd3": load(kit.CLIP_L, "sd3")[0]}


def encode(comfyui, clip, text, backtrack=20):
    out = comfyui.node_class(NODE)().encode(clip, text, backtrack)
    return out["result"][0], out["result"][1]


def clip_text_encode(comfyui, clip, text):
    return comfyui.node_class("CLIPTextEncode")().encode(clip, text)[0]


def tokenize(comfyui, clip, text, backtrack=20):
    return comfyui.pack_submodule("comfy_adapter.clip").tokenize(clip, text, backtrack)


WIDTH = {"sd15": 768, "sdxl": 2048, "sd3": 4096}
POOLED = {"sd15": 768, "sdxl": 1280, "sd3": 2048}


@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd3"])
@pytest.mark.parametrize("text", ["1girl, (red hair:1.3), karin \\(blue archive\\), smile, embedding:missing",
                                  "1girl\x01solo, \x00smile\x7f",  # CLIP gives control characters tokens of their own
                                  ",", " , , "])  # a prompt of commas only keeps them, as CLIPTextEncode does
def test_short_prompt_without_break_equals_clip_text_encode_bit_for_bit(comfyui, clips, family, text):
    clip = clips[family]
    assert tokenize(comfyui, clip, text).tokens == clip.tokenize(text)
    ours, theirs = encode(comfyui, clip, text)[0], clip_text_encode(comfyui, clip, text)
    assert torch.equal(ours[0][0], theirs[0][0])
    assert torch.equal(ours[0][1]["pooled_output"], theirs[0][1]["pooled_output"])


CHUNK_KEYS = {"sd15": "l", "sdxl": "g, l", "sd3": "g, l"}  # SDXL/SD3: L and G chunk alike, reported once
SEQUENCES = {"sd15": [], "sdxl": [], "sd3": ["t5xxl: one sequence of 77 tokens (BREAK removed)"]}


@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd3"])
def test_break_starts_a_new_chunk_and_shapes_follow(comfyui, clips, family):
    cond, report = encode(comfyui, clips[family], "by wlop, by kantoku BREAK 1girl, solo, long hair")
    assert cond[0][0].shape == (1, 2 * 77, WIDTH[family])
    assert cond[0][1]["pooled_output"].shape == (1, POOLED[family])
    # CLIP's BPE: "1girl" is "1" + "girl", each comma a token of its own
    assert report.splitlines() == [
        f"clip chunks ({CHUNK_KEYS[family]}): 2",
        "  chunk 1:  8/75 tokens, segment 1 | by wlop , by kantoku",
        "  chunk 2:  7/75 tokens, segment 2 | 1 girl , solo , long hair",
        *SEQUENCES[family],
    ]


def test_sdxl_report_lists_each_chunking_once_and_split_tags_of_both_sides(comfyui, clips):
    result = tokenize(comfyui, clips["sdxl"], long_tag_prompt(), backtrack=0)
    assert [c["keys"] for c in result.chunkings] == [["g", "l"]]
    assert result.report.count("clip chunks") == 1
    assert len(result.split_tags) == len(result.chunkings[0]["split_tags"]) >= 1
    assert result.report.count("is cut between") == len(result.split_tags)


def test_sdxl_sides_have_the_same_chunk_count_with_their_own_padding(comfyui, clips):
    tokens = tokenize(comfyui, clips["sdxl"], "a, b BREAK c BREAK d").tokens
    assert len(tokens["l"]) == len(tokens["g"]) == 3
    assert tokens["l"][0][-1] == (49407, 1.0) and tokens["g"][0][-1] == (0, 1.0)
    assert [[t for t, _ in c[1:-1] if t not in (0, 49407)] for c in tokens["l"]] == \
        [[t for t, _ in c[1:-1] if t not in (0, 49407)] for c in tokens["g"]]


def test_t5_sees_the_whole_prompt_with_break_removed(comfyui, clips):
    clip = clips["sd3"]
    tokens = tokenize(comfyui, clip, "by wlop BREAK 1girl, solo").tokens
    assert tokens["t5xxl"] == clip.tokenize("by wlop, 1girl, solo")["t5xxl"]
    assert len(tokens["l"]) == 2


def long_tag_prompt(n_tags=40):
    words = ["long", "silver", "hair", "blue", "eyes", "school", "uniform", "pleated", "skirt", "red", "ribbon"]
    return ", ".join(" ".join(words[(i + j) % len(words)] for j in range(2 + i % 3)) for i in range(n_tags))


def test_comma_backtracking_keeps_each_tag_in_one_chunk(comfyui, clips):
    clip = clips["sd15"]
    text = long_tag_prompt()
    ours = tokenize(comfyui, clip, text, backtrack=20)
    chunks = ours.tokens["l"]
    assert len(chunks) >= 2 and ours.split_tags == []
    for chunk in chunks[:-1]:
        body = [t for t, _ in chunk[1:] if t != 49407]
        assert body[-1] == COMMA  # each full chunk ends at a comma: no tag crosses the boundary
        assert 75 - len(body) <= 20  # and only what the A1111 rule allows moved on
    summary = ours.chunkings[0]["chunks"]
    assert [c["moved"] for c in summary[:-1]] == [75 - c["tokens"] for c in summary[:-1]] and summary[-1]["moved"] == 0
    assert any(c["moved"] for c in summary) and "moved on" in ours.report
    # ComfyUI's own tokenizer cuts this prompt mid-tag, which is what backtracking is for
    first = [t for t, _ in clip.tokenize(text)["l"][0][1:-1]]
    assert first[-1] != COMMA


def test_a_comma_merged_into_a_token_ends_a_tag_as_a_lone_comma_does(comfyui, clips):
    """CLIP's BPE reads `),` and `.,` as one token, and the normaliser writes `\\(fate\\),` after every
    qualifier tag: backtracking cuts after such a token, so `fate/grand order` is not cut in two."""
    prompt = ("masterpiece, best quality, newest, absurdres, 4girls, multiple girls, looking at viewer, smile, "
              "group picture, red eyes, blue eyes, long hair, ahoge, blonde hair, artoria pendragon \\(fate\\), "
              "jeanne d'arc alter \\(fate\\), mash kyrielight \\(fate\\), tamamo no mae \\(fate/extra\\), "
              "fate/grand order, armor, dress")
    ours = tokenize(comfyui, clips["sd15"], prompt, backtrack=20)
    chunks = ours.chunkings[0]["chunks"]
    assert ours.split_tags == [] and len(chunks) == 2
    assert chunks[0]["text"].endswith("( fate / extra ),") and chunks[1]["text"].startswith("fate / grand order")


@pytest.mark.parametrize("separator", ["},{", "],[", ">,<"])
def test_a_comma_merged_into_a_token_with_what_follows_ends_a_tag_too(comfyui, clips, separator):
    """`{a},{b}` (NovelAI-style braces typed without spaces), `[a],[b]`: CLIP's BPE reads the comma as a
    bare `,` token, without the end-of-word mark a lone comma has; it still ends a tag."""
    tags = ["long flowing silver hair", "ornate golden armor", "glowing red eyes", "crimson battle standard"] * 6
    prompt = separator[0] + separator.join(tags) + separator[-1]
    ours = tokenize(comfyui, clips["sd15"], prompt, backtrack=20)
    chunks = ours.chunkings[0]["chunks"]
    assert ours.split_tags == [] and len(chunks) == 2 and chunks[0]["text"].endswith(",")


def test_without_backtracking_the_cut_tag_is_reported(comfyui, clips):
    result = tokenize(comfyui, clips["sd15"], long_tag_prompt(), backtrack=0)
    assert result.split_tags and "is cut between chunks 1 and 2" in result.report


def test_a_break_segment_of_commas_costs_no_chunk(comfyui, clips):
    cond, report = encode(comfyui, clips["sd15"], "1girl, BREAK, BREAK ,, BREAK solo")
    assert cond[0][0].shape[1] == 2 * 77
    assert report.splitlines()[0] == "clip chunks (l): 2"


def test_a_break_inside_parentheses_is_a_word_and_the_report_says_so(comfyui, clips):
    """A1111's rule: `(a BREAK b:1.2)` is one weighted item; the report points at the parentheses."""
    cond, report = encode(comfyui, clips["sd15"], "1girl, (red hair BREAK blue eyes:1.2), smile")
    assert cond[0][0].shape[1] == 77 and "note: 1 BREAK inside parentheses read as the word" in report
    cond, report = encode(comfyui, clips["sd15"], "1girl, (red hair:1.2) BREAK blue eyes, BREAKFAST")
    assert cond[0][0].shape[1] == 2 * 77 and "note:" not in report


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_report_shows_non_ascii_text_as_written(comfyui, clips, family):
    """CLIP's vocabulary is byte-level: é or ミ spans tokens whose symbols stand for bytes. The report
    shows the characters (a review found `cafÃ©` and `åĪĿéŁ³` there); a character a chunk boundary cuts
    shows as U+FFFD on both sides, as the tokenizer's own decode shows it."""
    cond, report = encode(comfyui, clips[family], "café, pokémon, 初音ミク, (ミク:1.2) BREAK ☆, solo")
    assert report.splitlines()[1:3] == ["  chunk 1: 18/75 tokens, segment 1 | café , pokémon , 初音ミク , ミク",
                                        "  chunk 2:  3/75 tokens, segment 2 | ☆, solo"]
    result = tokenize(comfyui, clips[family], "a " * 74 + "初", backtrack=0)
    assert [c["text"][-1] for c in result.chunkings[0]["chunks"]] == ["\ufffd"] * 2
    assert "å" not in result.report and "\ufffd" in result.report


@pytest.mark.parametrize("text", ["by wlop，BREAK，1girl, solo", "by wlop、BREAK、1girl, solo",
                                  "(by wlop:1.2)BREAK 1girl, solo", "by wlop, BREAK(1girl:1.1), solo"])
def test_a_break_beside_a_wide_comma_or_a_parenthesis_starts_a_chunk(comfyui, clips, text):
    """A1111 splits at a BREAK with a word boundary on each side; `，` and `)` are such boundaries (a
    review found these read as the word, and `)BREAK` reported as inside parentheses)."""
    cond, report = encode(comfyui, clips["sd15"], text)
    assert cond[0][0].shape[1] == 2 * 77 and "note:" not in report, report


def test_a_prompt_too_long_without_break_is_told_to_be_shorter(comfyui, clips):
    """A CJK character costs CLIP 2-3 tokens: 40,000 of them pass the character limit and exceed the
    1,000-chunk cap. The message says the prompt is too long, not that it has too many BREAKs."""
    with pytest.raises(ValueError, match="shorter prompt") as error:
        encode(comfyui, clips["sd15"], "初音" * 20000)
    assert "BREAK" not in str(error.value)


def test_a_tag_cut_in_a_list_without_ascii_commas_gets_advice_that_works(comfyui, clips):
    """CLIP reads neither `，` nor a line break as a comma, so backtracking finds none and raising
    comma_backtrack cannot help: the warning says what does."""
    tags = ["long hair", "blue eyes", "school uniform", "pleated skirt", "red ribbon", "thighhighs"] * 6
    for separator in ("，", "\n"):
        result = tokenize(comfyui, clips["sd15"], separator.join(tags), backtrack=74)
        assert result.split_tags, separator
        assert "separate the tags with ','" in result.report and "raise comma_backtrack" not in result.report
    result = tokenize(comfyui, clips["sd15"], long_tag_prompt(), backtrack=2)
    assert result.split_tags and "raise comma_backtrack" in result.report


@pytest.mark.parametrize("text", ["", "BREAK BREAK", "(unbalanced, ((tag", "1girl\x00\x07, \U0001F600, smile, \u200b",
                                  ")) stray BREAK (", "tag, " * 5000])
def test_awkward_input_gives_a_result(comfyui, clips, text):
    cond, report = encode(comfyui, clips["sd15"], text)
    assert torch.isfinite(cond[0][0]).all() and cond[0][0].shape[1] % 77 == 0
    assert report


def test_encoder_node_in_a_graph_shows_its_report(comfyui):
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="stable_diffusion").out(0)
    positive = g.node(NODE, clip=clip, text="by wlop BREAK 1girl, solo", comma_backtrack=20)
    negative = g.node(NODE, clip=clip, text="lowres", comma_backtrack=20)
    model = g.node("UNETLoader", unet_name=kit.SD15_UNET, weight_dtype="default").out(0)
    patched = g.node(kit.PATCH, model=model, **kit.PATCH_DEFAULTS).out(0)
    latent = g.node("EmptyLatentImage", width=64, height=64, batch_size=1).out(0)
    samples = g.node("KSampler", model=patched, seed=1, steps=3, cfg=5.0, sampler_name="euler", scheduler="simple",
                     positive=positive.out(0), negative=negative.out(0), latent_image=latent, denoise=1.0).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix="latents/encoder")
    result = comfyui.run(g.finalize())
    assert torch.isfinite(comfyui.saved_latent(result, save.id)).all()
    assert "clip chunks (l): 2" in result.outputs[positive.id]["text"][0]
