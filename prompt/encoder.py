"""BREAK/chunk-aware tokenization on top of ComfyUI's own tokenizers.

No ComfyUI here: the tokenizers come through comfy_adapter/clip.py (ClipTokenizers), whose
ComfyUI tokenizer parses weights, escapes and embeddings exactly as CLIPTextEncode does; only the
chunking is ours.

- CLIP-style encoders (75-token chunks: CLIP-L, CLIP-G): each BREAK segment starts a new chunk, and
  A1111's comma backtracking keeps tags whole at chunk boundaries. SDXL's L and G sides tokenize
  the same text with the same vocabulary, so they end with the same chunk count.
- Sequence encoders (T5, LLMs): the whole prompt as one sequence with BREAK removed, tokenized by
  ComfyUI exactly as CLIPTextEncode would. ComfyUI's own encoders then join the parts (SD3: CLIP
  chunks, then T5 along the token axis) and pick the pooled output (the first chunk's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .booru import break_segments, split_break
from .chunking import (
    CHUNK_LENGTH,
    DEFAULT_BACKTRACK,
    Chunk,
    check_prompt,
    chunk_cap,
    chunk_segments,
    layout,
    too_many_chunks,
)


@dataclass
class EncodedTokens:
    tokens: dict  # what clip.tokenize() returns: {encoder key: [[(token, weight), ...] per chunk]}
    report: str
    chunk_count: int
    split_tags: list[str]
    # each distinct CLIP chunking once: {"keys": [...], "chunks": [{"tokens", "segment", "moved", "text"}],
    # "split_tags": [...]}; "moved": tokens comma backtracking carried on to the next chunk
    chunkings: list = field(default_factory=list)


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
    return sub.decode(tokens)


def tokenize(tokenizers, text: str, comma_backtrack: int = DEFAULT_BACKTRACK) -> EncodedTokens:
    """tokenizers: .tokenize(text) gives ComfyUI's own tokens ({encoder key: chunks}); .chunked(key)
    gives the key's CLIP-style tokenizer (start/end/pad/comma tokens, token_stream, decode), or None
    for a sequence encoder. comfy_adapter.clip.ClipTokenizers provides both for a ComfyUI CLIP."""
    check_prompt(text)  # size and nesting limits, before any parsing
    # between BREAKs, a segment of blank items (`BREAK, BREAK`) is empty: it would cost a chunk for a
    # lone comma; a prompt without BREAK keeps its commas, as CLIPTextEncode does
    pieces = split_break(text)
    has_break = len(pieces) > 1
    segments = [",".join(items) if not has_break or any(not item.isspace() and item for item in items) else ""
                for items in pieces]
    plain = tokenizers.tokenize(without_break(segments) if has_break else text)  # ComfyUI's own, for sequence encoders
    subs = {key: tokenizers.chunked(key) for key in plain}
    tokens, sequences, chunkings, count = {}, [], [], 0
    for key, default in plain.items():
        sub = subs.get(key)
        if sub is None:
            tokens[key] = default
            length = sum(len(c) for c in default)
            sequences.append(f"{key}: one sequence of {length} tokens" + (" (BREAK removed)" if has_break else ""))
            continue
        _refuse_break_floods(segments, len(default))
        # the comma token, and those that end in a comma (`),`) where the tokenizer names them
        commas = getattr(sub, "comma_tokens", None) or frozenset({sub.comma_token} - {None})
        streams = [sub.token_stream(seg) for seg in segments]
        plan = chunk_segments(streams, lambda t, c=commas: isinstance(t, int) and t in c, comma_backtrack)
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
    in_parentheses = len(break_segments(text.translate(_PARENTHESES_AS_SPACES))) - len(pieces) if "BREAK" in text else 0
    if in_parentheses > 0:
        lines.append(f"  note: {in_parentheses} BREAK{'s' if in_parentheses > 1 else ''} inside parentheses "
                     "read as the word (A1111's rule, as in `(a BREAK b:1.2)`): close the parentheses before a "
                     "BREAK to start a new chunk")
    split = [tag for chunking in chunkings for tag in chunking["split_tags"]]
    return EncodedTokens(tokens, "\n".join(lines), count, split, chunkings)


_PARENTHESES_AS_SPACES = str.maketrans("()", "  ")


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
    return {"chunks": chunks, "split_tags": [f"…{decode(t)}…" if clipped else decode(t) for _, t, clipped in plan.split_tags],
            "cuts": [index for index, *_ in plan.split_tags], "commaless": list(plan.commaless)}


def report_lines(chunking: dict) -> list[str]:
    chunks = chunking["chunks"]
    lines = [f"clip chunks ({', '.join(chunking['keys'])}): {len(chunks)}"]
    for i, chunk in enumerate(chunks):
        moved = f", {chunk['moved']} moved on" if chunk["moved"] else ""
        lines.append(f"  chunk {i + 1}: {chunk['tokens']:2d}/{CHUNK_LENGTH} tokens, segment {chunk['segment'] + 1}{moved}"
                     f" | {chunk['text']}")
    commaless = set(chunking.get("commaless", ()))
    for n, (index, tag) in enumerate(zip(chunking["cuts"], chunking["split_tags"])):
        advice = ("no comma in the chunk: separate the tags with ',' (CLIP reads neither '，' nor '、' nor a line "
                  "break as one; the Booru Prompt Normalizer writes them as commas) or add a BREAK") \
            if n in commaless else "no comma close enough: raise comma_backtrack or add a BREAK"
        lines.append(f"  warning: '{tag}' is cut between chunks {index + 1} and {index + 2} ({advice})")
    return lines


def _refuse_break_floods(segments: list[str], stock_chunks: int):
    """Each non-blank segment costs at least one CLIP chunk: refuse a flood before tokenizing every
    segment on its own (chunk_segments checks the exact count afterwards)."""
    filled = sum(1 for seg in segments if seg.strip(", \t\n"))
    tokens = CHUNK_LENGTH * stock_chunks  # at most this many tokens, as ComfyUI chunks the text
    if filled > chunk_cap(tokens):
        raise too_many_chunks(chunk_cap(tokens), tokens, len(segments))


def _even_out_chunks(tokens: dict, subs: dict):
    """SDXL cuts L and G to the shorter one: make sure no chunked side is shorter."""
    chunked = [k for k in tokens if subs.get(k) is not None]
    if not chunked:
        return
    most = max(len(tokens[k]) for k in chunked)
    for key in chunked:
        sub = subs[key]
        while len(tokens[key]) < most:
            tokens[key].append(layout(Chunk(), sub.start_token, sub.end_token, sub.pad_token))
