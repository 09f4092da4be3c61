"""A1111's CLIP chunking (plain Python): 75-token chunks, BREAK starts a new chunk, and comma
backtracking keeps a tag from being cut at a chunk boundary.

From A1111's FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line: when a chunk is full and the last
comma is at most `backtrack` tokens back, the tokens after that comma move to the next chunk.
Tokens here are opaque (ints, or embedding vectors); only `is_comma` looks at them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CHUNK_LENGTH = 75  # CLIP's 77 positions minus start and end tokens
DEFAULT_BACKTRACK = 20  # A1111's "Prompt word wrap length limit"

# Limits on hostile prompts (README "Security and limits"). Work over prompt text holds the
# interpreter lock, so nothing can cancel it: sizes are bounded before any parsing.
# 100,000 characters is ~25,000 CLIP tokens of ordinary text (333 chunks), some 20x the longest real
# prompt; one-letter tags ("a, " * 33000) reach ~67,000 (880 chunks, under MAX_CHUNKS).
MAX_PROMPT_CHARS = 100_000
# Weight 1.1^32 = 21: far past any useful emphasis. ComfyUI's own weight parser recurses once per
# level and fails (RecursionError) near 1000; each level costs the normaliser a pass over its text.
MAX_PAREN_DEPTH = 32
# CLIP chunks: at most max(CHUNK_CAP_FLOOR, 2 x what CLIPTextEncode makes for the same tokens), and
# never more than MAX_CHUNKS. Without BREAK, backtracking at the default 20 leaves every chunk at
# least 56 tokens full (1.34x CLIPTextEncode's count), so the cap stops BREAK floods: "tag BREAK " *
# 10000 would be 10,000 chunks where CLIPTextEncode makes 267.
CHUNK_CAP_FLOOR = 64
MAX_CHUNKS = 1000
# A cut's report shows at most this many tokens either side of it: a comma-free run longer than that
# is prose, not a tag, and scanning it whole at every cut would take quadratic time.
CUT_CONTEXT = 16


class PromptTooLarge(ValueError):
    """A prompt beyond the documented limits; the message names the limit and the fix."""


def matched_paren_depth(text: str) -> int:
    """The deepest nesting of matched, unescaped parentheses (unmatched ones are text, as in ComfyUI's
    parser). Two linear passes."""
    partner = [False] * len(text)
    opens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            opens.append(i)
        elif ch == ")" and opens:
            partner[opens.pop()] = partner[i] = True
        i += 1
    depth = deepest = 0
    for i, matched in enumerate(partner):
        if matched:
            depth += 1 if text[i] == "(" else -1
            deepest = max(deepest, depth)
    return deepest


def check_prompt(text: str, setting: str = "text") -> None:
    """Size and nesting limits, checked before any parsing of the prompt."""
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptTooLarge(
            f"FlowAnime: the prompt in '{setting}' has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}. "
            "Shorten it (a CLIP prompt past a few thousand tokens gains nothing)."
        )
    depth = matched_paren_depth(text)
    if depth > MAX_PAREN_DEPTH:
        raise PromptTooLarge(
            f"FlowAnime: the prompt in '{setting}' nests parentheses {depth} deep; the limit is {MAX_PAREN_DEPTH} "
            "(each level multiplies the weight by 1.1). Use an explicit weight such as (tag:1.5), or escape literal "
            "parentheses as \\( and \\)."
        )


def extreme_weights(token_lists) -> list[float]:
    """The distinct token weights that are not finite or beyond +-100, from (token, weight) chunks."""
    found = {float(w) for chunks in token_lists for chunk in chunks for _, w in chunk
             if not math.isfinite(w) or abs(w) > 100}
    return sorted(found, key=abs, reverse=True)


def chunk_cap(tokens: int) -> int:
    """How many CLIP chunks a prompt of this many tokens may make (see CHUNK_CAP_FLOOR)."""
    return min(MAX_CHUNKS, max(CHUNK_CAP_FLOOR, 2 * math.ceil(tokens / CHUNK_LENGTH)))


def too_many_chunks(chunks: int, tokens: int, segments: int) -> PromptTooLarge:
    stock = math.ceil(tokens / CHUNK_LENGTH)
    if stock > MAX_CHUNKS:  # too long in itself, BREAKs or not
        return PromptTooLarge(
            f"FlowAnime: this prompt is {tokens:,} CLIP tokens, {stock:,} chunks of {CHUNK_LENGTH}; the limit is "
            f"{MAX_CHUNKS:,} chunks. Use a shorter prompt (a character of Chinese, Japanese or Korean, or an "
            "emoji, often costs CLIP 2 or 3 tokens).")
    return PromptTooLarge(
        f"FlowAnime: this prompt would make more than {chunks} CLIP chunks ({segments} BREAK segments, {tokens} "
        f"tokens), where CLIPTextEncode makes {stock} for the same tokens. The limit is "
        f"{chunk_cap(tokens)}: {CHUNK_CAP_FLOOR} or twice CLIPTextEncode's count, whichever is larger, at most "
        f"{MAX_CHUNKS}. Each BREAK starts a chunk: use fewer BREAKs (empty ones cost nothing) or a shorter prompt."
    )


@dataclass
class Chunk:
    tokens: list = field(default_factory=list)  # (token, weight) pairs, at most CHUNK_LENGTH
    segment: int = 0  # which BREAK segment it belongs to


@dataclass
class ChunkPlan:
    chunks: list[Chunk]
    # (chunk index before the cut, tokens of the tag that was cut, whether that run went on past
    # CUT_CONTEXT tokens either side)
    split_tags: list[tuple[int, list, bool]]
    # which of split_tags were cut in a chunk with no comma at all (a list separated by `，` or line
    # breaks, which CLIP does not read as commas): a larger comma_backtrack cannot move them
    commaless: list[int] = field(default_factory=list)


def chunk_segments(segments: Sequence[Sequence[tuple]], is_comma: Callable[[object], bool],
                   backtrack: int = DEFAULT_BACKTRACK, chunk_length: int = CHUNK_LENGTH) -> ChunkPlan:
    """Chunk each segment's (token, weight) stream; every segment starts a new chunk.

    A segment with no tokens makes no chunk; a prompt with no tokens at all makes one empty chunk
    (what ComfyUI gives an empty prompt). More chunks than chunk_cap() allows raise PromptTooLarge,
    as soon as the count passes it.
    """
    if not 0 <= backtrack < chunk_length:
        raise ValueError(f"FlowAnime: 'comma_backtrack' must be between 0 and {chunk_length - 1}, got {backtrack}.")
    tokens = sum(len(stream) for stream in segments)
    cap = chunk_cap(tokens)
    chunks: list[Chunk] = []
    split_tags, commaless = [], []
    for seg_index, stream in enumerate(segments):
        if not stream:
            continue
        if len(chunks) >= cap:
            raise too_many_chunks(cap, tokens, len(segments))
        chunk, last_comma = Chunk(segment=seg_index), -1
        for pos, pair in enumerate(stream):
            token = pair[0]
            if is_comma(token):
                last_comma = len(chunk.tokens)
            elif backtrack and len(chunk.tokens) == chunk_length and last_comma != -1 \
                    and len(chunk.tokens) - last_comma <= backtrack:
                moved = chunk.tokens[last_comma + 1 :]
                chunk.tokens = chunk.tokens[: last_comma + 1]
                chunks.append(chunk)
                chunk, last_comma = Chunk(moved, seg_index), -1
            if len(chunk.tokens) == chunk_length:
                # a hard cut: if no comma ends the chunk and none starts the next, a tag is cut in two
                if not is_comma(chunk.tokens[-1][0]) and not is_comma(token):
                    if last_comma == -1:
                        commaless.append(len(split_tags))
                    split_tags.append((len(chunks), *_tag_at(stream, pos, is_comma)))
                chunks.append(chunk)
                chunk, last_comma = Chunk(segment=seg_index), -1
            chunk.tokens.append(pair)
        chunks.append(chunk)
    if len(chunks) > cap:
        raise too_many_chunks(cap, tokens, len(segments))
    if not chunks:
        chunks.append(Chunk())
    return ChunkPlan(chunks, split_tags, commaless)


def _tag_at(stream, pos, is_comma, context: int = CUT_CONTEXT):
    """The comma-delimited run of tokens around position pos, at most `context` tokens either side
    (a bounded scan: every cut in a long comma-free run costs the same). Returns (tokens, clipped)."""
    start = pos
    while start > 0 and pos - start < context and not is_comma(stream[start - 1][0]):
        start -= 1
    end = pos
    while end < len(stream) and end - pos < context and not is_comma(stream[end][0]):
        end += 1
    clipped = (start > 0 and not is_comma(stream[start - 1][0])) or (end < len(stream) and not is_comma(stream[end][0]))
    return [pair[0] for pair in stream[start:end]], clipped


def layout(chunk: Chunk, start_token, end_token, pad_token, chunk_length: int = CHUNK_LENGTH) -> list[tuple]:
    """ComfyUI's per-chunk layout: [start] + tokens + [end] + pad, all extra tokens at weight 1."""
    out = [] if start_token is None else [(start_token, 1.0)]
    out += [(t, w) for t, w in chunk.tokens]
    if end_token is not None:
        out.append((end_token, 1.0))
    full = chunk_length + (start_token is not None) + (end_token is not None)
    out += [(pad_token, 1.0)] * (full - len(out))
    return out
