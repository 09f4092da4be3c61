"""Node: normalise a booru-tag prompt (STRING in, STRING out)."""

from __future__ import annotations

from ..prompt.booru import NormalizeOptions, normalize


class BooruPromptNormalizer:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": False,
                                    "tooltip": "Danbooru-style tags, BREAKs, weights and sentences."}),
                "drop_quality_tags": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Remove masterpiece / best quality / score_N and the like (Nekofantasia was never "
                               "trained on them).",
                }),
                "artists_to_own_chunk": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Move @artist / by artist tags into their own BREAK segment at the end (RouWei "
                               "needs artist tags in a separate CLIP chunk).",
                }),
                "lowercase": ("BOOLEAN", {"default": False, "tooltip": "Lower-case the tags (not sentences)."}),
            }
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "normalize"
    CATEGORY = "FlowAnime/prompt"
    DESCRIPTION = (
        "Tidy a booru-tag prompt for ComfyUI: underscores to spaces (kaomoji and score_N kept), qualifier "
        "parentheses escaped (karin_(blue_archive) -> karin \\(blue archive\\)), duplicates and stray commas removed. "
        "Weights, BREAK, sentences and @artist tags are kept."
    )

    def normalize(self, text, drop_quality_tags, artists_to_own_chunk, lowercase):
        return (normalize(text, NormalizeOptions(drop_quality_tags, artists_to_own_chunk, lowercase)),)
