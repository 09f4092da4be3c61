"""The CLIP object's tokenizers, as the BREAK encoder (prompt/encoder.py) needs them.

ComfyUI's CLIP keeps one sub-tokenizer per text encoder (clip_l, clip_g, t5xxl, qwen...), each an
SDTokenizer or a sequence tokenizer. The encoder core sees them only through ChunkTokenizer below:
the chunk settings, special tokens, a flat (unchunked, unpadded) parse and the vocabulary. Copying a
tokenizer and changing its private chunking settings happens here and nowhere else.

Checked against newer ComfyUI: comfy/sd1_clip.py@443393b (SDTokenizer keeps start_token,
end_token, pad_token, tokens_start, max_length, pad_to_max_length, min_length, min_padding,
inv_vocab; tokenize_with_weights reads min_length/min_padding from tokenizer_options first, which
we do not pass, and gains pad_left/disable_weights; it returns the same chunks of (token, weight)).
"""

from __future__ import annotations

import copy
import weakref

from ..prompt.chunking import CHUNK_LENGTH, DEFAULT_BACKTRACK
from ..prompt.encoder import EncodedTokens
from ..prompt.encoder import tokenize as tokenize_with_tokenizers


class ChunkTokenizer:
    """A CLIP-style sub-tokenizer (75-token chunks padded to 77) seen as the encoder core needs it."""

    def __init__(self, sub):
        self._sub = sub
        self.start_token = sub.start_token
        self.end_token = sub.end_token
        self.pad_token = sub.pad_token
        self.comma_token = self._single_token(",")
        self.comma_tokens = _comma_tokens(sub, self.comma_token)

    @staticmethod
    def accepts(sub) -> bool:
        return sub is not None and hasattr(sub, "tokenize_with_weights") \
            and bool(getattr(sub, "pad_to_max_length", False)) and getattr(sub, "max_length", 0) == CHUNK_LENGTH + 2

    def _single_token(self, text):
        ids = self._sub.tokenizer(text)["input_ids"]
        ids = ids[self._sub.tokens_start: len(ids) - 1 if self._sub.end_token is not None else len(ids)]
        return ids[0] if len(ids) == 1 else None

    def token_stream(self, text: str) -> list:
        """(token, weight) pairs for text, parsed by ComfyUI's tokenizer but not chunked or padded."""
        flat = copy.copy(self._sub)
        flat.max_length = 10**12
        flat.pad_to_max_length = False
        flat.min_length = None
        flat.min_padding = None
        batch = flat.tokenize_with_weights(text, False)[0]
        if self.start_token is not None:
            batch = batch[1:]
        if self.end_token is not None:
            batch = batch[:-1]
        return batch

    def decode(self, tokens) -> str:
        """The text of tokens for the reports; an embedding's vectors show as <embedding>."""
        parts, run = [], []
        for t in [*tokens, None]:
            if isinstance(t, int):
                run.append(t)
                continue
            if run:
                parts.append(self._decode_ids(run))
                run = []
            if t is not None:
                parts.append("<embedding>")
        return " ".join(p for p in parts if p)

    def _decode_ids(self, ids: list) -> str:
        # CLIP's vocabulary is byte-level (a non-ASCII character spans tokens whose symbols stand for
        # bytes): the tokenizer's own decode turns them back into text, a cut character into U+FFFD.
        try:
            return self._sub.tokenizer.decode(ids, clean_up_tokenization_spaces=False).strip()
        except Exception:  # a tokenizer without a Hugging Face decode: the vocabulary's symbols as they are
            inv = getattr(self._sub, "inv_vocab", {})
            return "".join(inv.get(t, "?").replace("</w>", " ") for t in ids).strip()


_COMMA_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per sub-tokenizer: its vocabulary is read once


def _comma_tokens(sub, comma_token) -> frozenset:
    """The comma, and the tokens CLIP's BPE makes of a comma merged with punctuation before it (`),` `.,`
    `!,`: the normaliser writes `\\(qualifier\\),` and `sentence., next`) or after it (the bare `,` of
    `{a},{b}` and `[a],[b]`, `,)` `,@`): each ends a tag as a lone comma does."""
    try:
        cached = _COMMA_TOKENS.get(sub)
    except TypeError:  # not weakly referable: read it each time
        cached = None
    if cached is not None:
        return cached
    ids = {comma_token} if comma_token is not None else set()
    for token, word in getattr(sub, "inv_vocab", {}).items():
        text = word[:-4] if isinstance(word, str) and word.endswith("</w>") else word
        if isinstance(text, str) and "," in text and not any(ch.isalnum() for ch in text):
            ids.add(token)
    found = frozenset(ids)
    try:
        _COMMA_TOKENS[sub] = found
    except TypeError:
        pass
    return found


class ClipTokenizers:
    """A ComfyUI CLIP's tokenizers: its own tokenize(), and a ChunkTokenizer for each CLIP-style key."""

    def __init__(self, clip):
        self._clip = clip

    def tokenize(self, text: str) -> dict:
        return self._clip.tokenize(text)

    def chunked(self, key: str) -> ChunkTokenizer | None:
        """The ChunkTokenizer for an output key ("l", "g", ...); None for sequence encoders (T5, LLMs)."""
        tokenizer = self._clip.tokenizer
        for attr in (f"clip_{key}", key, getattr(tokenizer, "clip", None)):
            sub = getattr(tokenizer, attr, None) if attr else None
            if sub is not None and hasattr(sub, "tokenize_with_weights"):
                return ChunkTokenizer(sub) if ChunkTokenizer.accepts(sub) else None
        return None


def tokenize(clip, text: str, comma_backtrack: int = DEFAULT_BACKTRACK) -> EncodedTokens:
    """BREAK/chunk-aware tokens for a ComfyUI CLIP (what CLIP Text Encode with BREAK encodes)."""
    return tokenize_with_tokenizers(ClipTokenizers(clip), text, comma_backtrack)


def encode(clip, tokens: dict):
    """CONDITIONING for tokens, as CLIPTextEncode encodes them (ComfyUI joins the encoders' parts)."""
    return clip.encode_from_tokens_scheduled(tokens)
