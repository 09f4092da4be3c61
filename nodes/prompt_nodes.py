"""Node: normalise a booru-tag prompt (STRING in, STRING out)."""

from __future__ import annotations

from ..comfy_adapter.clip import encode, tokenize
from ..comfy_adapter.prompt_support import tag_list_stamp, user_tag_list
from ..prompt.booru import PRESET_NAMES, NormalizeOptions, normalize_with_report, preset_options
from ..prompt.chunking import DEFAULT_BACKTRACK, extreme_weights


class BooruPromptNormalizer:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                # dynamicPrompts as CLIPTextEncode's box: // and /* */ comments and {a|b} choices are
                # resolved by the frontend when the prompt is queued, so this box means what that one does
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "Danbooru-style tags, BREAKs, weights and sentences. // and /* */ "
                                               "comments are dropped and {a|b} picks one, as in CLIPTextEncode."}),
                "drop_quality_tags": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Remove masterpiece / best quality / score_N and the like (Nekofantasia was never "
                               "trained on them). Used with preset 'custom'.",
                }),
                "artists_to_own_chunk": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Move @artist / by artist tags into their own BREAK segment at the end. Used with "
                               "preset 'custom'; for RouWei use the rouwei preset, which also writes artists as "
                               "'by x' and puts their chunk first, as its card asks.",
                }),
                "lowercase": ("BOOLEAN", {"default": False, "tooltip": "Lower-case the tags (not sentences)."}),
            },
            # New options are optional inputs with defaults: workflows and API prompts saved before them
            # still load and behave as before.
            "optional": {
                "resolve_aliases": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Replace tags the tag list knows as aliases by their canonical tag "
                               "(blueeyes -> blue eyes, mouth open -> open mouth).",
                }),
                "tag_list_csv": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "Empty: the bundled Danbooru tag list. Or a tagcomplete-format .csv/.csv.gz file "
                               "inside ComfyUI's user directory (path relative to it). 'none': no tag list.",
                }),
                "preset": (list(PRESET_NAMES), {
                    "default": "custom",
                    "tooltip": "Per-model settings from the model cards. nekofantasia: no quality tags. rouwei: "
                               "'by artist' tags, style tags and quality tags in their own first BREAK chunk (when the "
                               "prompt has an artist or style tag). nai-v2-fm: the card's "
                               "order in one list: 1girl, character, series, other tags, artists (as written), "
                               "quality/meta tags. anima: quality, 1girl, "
                               "character, series, @artist, general tags, sentences; no BREAK (RDBT's card: leave quality tags "
                               "out of the prompt, the preset keeps what you write). custom: the options above.",
                }),
            },
        }

    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("text", "tag_report")
    OUTPUT_TOOLTIPS = (
        "The tidied prompt, for a text encoder's text input.",
        "The tags the tag list knows (with post counts), the aliases found and the tags it does not know; "
        "also shown on the node after a run.",
    )
    FUNCTION = "normalize"
    CATEGORY = "FlowAnime/prompt"
    DESCRIPTION = (
        "Tidy a booru-tag prompt for ComfyUI: underscores to spaces (kaomoji and score_N kept), qualifier "
        "parentheses escaped (karin_(blue_archive) -> karin \\(blue archive\\)), duplicates and stray commas removed. "
        "Weights, BREAK, sentences and @artist tags are kept. With the Danbooru tag list: aliases resolved, "
        "unknown tags reported (never dropped), per-model presets."
    )

    @classmethod
    def IS_CHANGED(cls, tag_list_csv="", **_):
        """A tag list edited on disk changes the output while the inputs stay the same."""
        return tag_list_stamp(tag_list_csv)

    def normalize(self, text, drop_quality_tags, artists_to_own_chunk, lowercase, resolve_aliases=False,
                  tag_list_csv="", preset="custom"):
        custom = NormalizeOptions(drop_quality_tags, artists_to_own_chunk, lowercase, resolve_aliases)
        options = preset_options(preset, custom)
        tags = user_tag_list(tag_list_csv)
        out, report = normalize_with_report(text, options, tags)
        report_text = "\n".join([f"preset: {preset}", *report.lines()])
        return {"ui": {"tag_report": [report_text]}, "result": (out, report_text)}


class CLIPTextEncodeBreak:
    """CLIPTextEncode with A1111's BREAK and comma backtracking, and a report of the chunks."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The text encoder, from the checkpoint or a CLIP loader (SD1.5, SDXL, SD3's "
                                             "three, Flux, Anima's Qwen)."}),
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "The prompt. BREAK (upper-case, outside parentheses) starts a new 75-token "
                                               "CLIP chunk; (tag:1.2) weights work as in CLIPTextEncode."}),
                "comma_backtrack": ("INT", {
                    "default": DEFAULT_BACKTRACK, "min": 0, "max": 74,
                    "tooltip": "When a 75-token chunk fills up, move the text after the last comma to the next "
                               "chunk if that comma is at most this many tokens back (A1111's rule). 0: cut anywhere.",
                }),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "STRING")
    RETURN_NAMES = ("conditioning", "chunk_report")
    OUTPUT_TOOLTIPS = (
        "For a sampler's or guider's positive or negative input.",
        "How the prompt was split into 75-token chunks, per encoder, and any tag cut between two; "
        "also shown on the node after a run.",
    )
    OUTPUT_NODE = False
    FUNCTION = "encode"
    CATEGORY = "FlowAnime/prompt"
    DESCRIPTION = (
        "Encode a prompt with BREAK and A1111 comma backtracking for CLIP encoders (SD1.5, SDXL, SD3's CLIP-L/G). "
        "T5 and LLM encoders get the whole prompt with BREAK removed. Without BREAK, a prompt under 75 tokens "
        "encodes exactly as CLIPTextEncode."
    )

    def encode(self, clip, text, comma_backtrack):
        if clip is None:
            raise RuntimeError("FlowAnime: the clip input is empty: connect a CLIP from a checkpoint or CLIP loader.")
        encoded = tokenize(clip, text, comma_backtrack)
        conditioning = encode(clip, encoded.tokens)
        _check_finite(conditioning, encoded.tokens)
        return {"ui": {"text": [encoded.report]}, "result": (conditioning, encoded.report)}


def _check_finite(conditioning, tokens: dict):
    """A NaN/inf conditioning makes every image NaN: stop here and name the weight that caused it."""
    import torch

    for cond, extras in conditioning:
        pooled = extras.get("pooled_output")
        if torch.isfinite(cond).all() and (pooled is None or torch.isfinite(pooled).all()):
            continue
        weights = extreme_weights(tokens.values())
        culprit = (f"the prompt weight{'s' if len(weights) > 1 else ''} "
                   f"{', '.join(f'{w:g}' for w in weights[:4])} (as in (tag:{weights[0]:g}))" if weights
                   else "a prompt weight or nesting of brackets")
        raise ValueError(
            f"FlowAnime: the encoded prompt in 'text' has NaN or inf values, from {culprit}: lower it (1.5 is already "
            "strong). If no weight is large, the text encoder overflows in its dtype: load the CLIP in fp32."
        )

