"""BREAK/chunk-aware tokenization on top of ComfyUI's own tokenizers.

Duck-typed on the CLIP object ComfyUI hands a node (no ComfyUI import): its tokenizer parses
weights, escapes and embeddings exactly as CLIPTextEncode does; only the chunking is ours.

- CLIP-style encoders (75-token chunks: CLIP-L, CLIP-G): each BREAK segment starts a new chunk, and
  A1111's comma backtracking keeps tags whole at chunk boundaries. SDXL's L and G sides tokenize
  the same text with the same vocabulary, so they end with the same chunk count.
- Sequence encoders (T5, LLMs): the whole prompt as one sequence with BREAK removed, tokenized by
  ComfyUI exactly as CLIPTextEncode would. ComfyUI's own encoders then join the parts (SD3: CLIP
  chunks, then T5 along the token axis) and pick the pooled output (the first chunk's).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .booru import split_break
from .chunking import CHUNK_LENGTH, DEFAULT_BACKTRACK, Chunk, chunk_segments, layout

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class EncodedTokens:
    tokens: dict  # what clip.tokenize() returns: {encoder key: [[(token, weight), ...] per chunk]}
    report: str
    chunk_count: int
    split_tags: list[str]
    # each distinct CLIP chunking once: {"keys": [...], "chunks": [{"tokens", "segment", "moved", "text"}],
    # "split_tags": [...]}; "moved": tokens comma backtracking carried on to the next chunk
    chunkings: list = field(default_factory=list)


def _sub_tokenizers(tokenizer, keys):
    """Map each output key ("l", "g", "t5xxl", ...) to the sub-tokenizer that produces it."""
    found = {}
    for key in keys:
        for attr in (f"clip_{key}", key, getattr(tokenizer, "clip", None)):
            sub = getattr(tokenizer, attr, None) if attr else None
            if sub is not None and hasattr(sub, "tokenize_with_weights"):
                found[key] = sub
                break
    return found


def _is_clip_chunked(sub) -> bool:
    """A CLIP-style sub-tokenizer: pads every chunk to 77 positions (75 tokens + start + end)."""
    return sub is not None and bool(getattr(sub, "pad_to_max_length", False)) \
        and getattr(sub, "max_length", 0) == CHUNK_LENGTH + 2


def _token_stream(sub, text: str) -> list:
    """(token, weight) pairs for text, parsed by ComfyUI's tokenizer but not chunked or padded."""
    flat = copy.copy(sub)
    flat.max_length = 10**12
    flat.pad_to_max_length = False
    flat.min_length = None
    flat.min_padding = None
    batch = flat.tokenize_with_weights(text, False)[0]
    if sub.start_token is not None:
        batch = batch[1:]
    if sub.end_token is not None:
        batch = batch[:-1]
    return batch


def _comma_token(sub):
    ids = sub.tokenizer(",")["input_ids"]
    ids = ids[sub.tokens_start : len(ids) - 1 if sub.end_token is not None else len(ids)]
    return ids[0] if len(ids) == 1 else None


def without_break(segments: list[str]) -> str:
    """The prompt for sequence encoders: segments joined where the BREAKs stood."""
    out = ""
    for seg in (s.strip() for s in segments):
        if not seg:
            continue
        if out and not out.rstrip().endswith((",", ".", ";", "!", "?")):
            out += ","
        out = f"{out} {seg}" if out else seg
    return out


def _decode(sub, tokens) -> str:
    inv = getattr(sub, "inv_vocab", {})
    words = [inv.get(t, "?") if isinstance(t, int) else "<embedding>" for t in tokens]
    return "".join(w.replace("</w>", " ") for w in words).strip()


def tokenize(clip, text: str, comma_backtrack: int = DEFAULT_BACKTRACK) -> EncodedTokens:
    text = _CONTROL.sub(" ", text)  # control characters mean nothing to any encoder; tabs/newlines stay
    segments = [",".join(items) for items in split_break(text)]
    has_break = len(segments) > 1
    plain = clip.tokenize(without_break(segments) if has_break else text)  # ComfyUI's own, for sequence encoders
    subs = _sub_tokenizers(clip.tokenizer, plain.keys())
    tokens, sequences, chunkings, count = {}, [], [], 0
    for key, default in plain.items():
        sub = subs.get(key)
        if not _is_clip_chunked(sub):
            tokens[key] = default
            length = sum(len(c) for c in default)
            sequences.append(f"{key}: one sequence of {length} tokens" + (" (BREAK removed)" if has_break else ""))
            continue
        comma = _comma_token(sub)
        streams = [_token_stream(sub, seg) for seg in segments]
        plan = chunk_segments(streams, lambda t, c=comma: c is not None and isinstance(t, int) and t == c, comma_backtrack)
        tokens[key] = [layout(chunk, sub.start_token, sub.end_token, sub.pad_token) for chunk in plan.chunks]
        count = max(count, len(tokens[key]))
        summary = chunk_summary(plan, lambda toks, s=sub: _decode(s, toks))
        same = next((c for c in chunkings if c["chunks"] == summary["chunks"]), None)
        if same is not None:  # SDXL's L and G: one vocabulary, one chunking; report it once
            same["keys"].append(key)
        else:
            chunkings.append({"keys": [key], **summary})
    _even_out_chunks(tokens, subs)
    lines = [line for chunking in chunkings for line in report_lines(chunking)] + sequences
    split = [tag for chunking in chunkings for tag in chunking["split_tags"]]
    return EncodedTokens(tokens, "\n".join(lines), count, split, chunkings)


def chunk_summary(plan, decode) -> dict:
    """The chunks of a plan as plain data (for the report and the editor's live counter). A chunk that
    ends short of 75 tokens inside its segment was ended by comma backtracking: the tokens that did
    not fit moved on to the next chunk."""
    chunks = []
    for i, chunk in enumerate(plan.chunks):
        nxt = plan.chunks[i + 1] if i + 1 < len(plan.chunks) else None
        moved = CHUNK_LENGTH - len(chunk.tokens) if nxt is not None and nxt.segment == chunk.segment else 0
        chunks.append({"tokens": len(chunk.tokens), "segment": chunk.segment, "moved": moved,
                       "text": decode([t for t, _ in chunk.tokens])})
    return {"chunks": chunks, "split_tags": [decode(t) for _, t in plan.split_tags],
            "cuts": [index for index, _ in plan.split_tags]}


def report_lines(chunking: dict) -> list[str]:
    chunks = chunking["chunks"]
    lines = [f"clip chunks ({', '.join(chunking['keys'])}): {len(chunks)}"]
    for i, chunk in enumerate(chunks):
        moved = f", {chunk['moved']} moved on" if chunk["moved"] else ""
        lines.append(f"  chunk {i + 1}: {chunk['tokens']:2d}/{CHUNK_LENGTH} tokens, segment {chunk['segment'] + 1}{moved}"
                     f" | {chunk['text']}")
    for index, tag in zip(chunking["cuts"], chunking["split_tags"]):
        lines.append(f"  warning: '{tag}' is cut between chunks {index + 1} and {index + 2}"
                     " (no comma close enough: raise comma_backtrack or add a BREAK)")
    return lines


def _even_out_chunks(tokens: dict, subs: dict):
    """SDXL cuts L and G to the shorter one: make sure no chunked side is shorter."""
    chunked = [k for k in tokens if _is_clip_chunked(subs.get(k))]
    if not chunked:
        return
    most = max(len(tokens[k]) for k in chunked)
    for key in chunked:
        sub = subs[key]
        while len(tokens[key]) < most:
            tokens[key].append(layout(Chunk(), sub.start_token, sub.end_token, sub.pad_token))
