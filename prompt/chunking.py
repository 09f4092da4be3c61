"""A1111's CLIP chunking (plain Python): 75-token chunks, BREAK starts a new chunk, and comma
backtracking keeps a tag from being cut at a chunk boundary.

From A1111's FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line: when a chunk is full and the last
comma is at most `backtrack` tokens back, the tokens after that comma move to the next chunk.
Tokens here are opaque (ints, or embedding vectors); only `is_comma` looks at them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CHUNK_LENGTH = 75  # CLIP's 77 positions minus start and end tokens
DEFAULT_BACKTRACK = 20  # A1111's "Prompt word wrap length limit"


@dataclass
class Chunk:
    tokens: list = field(default_factory=list)  # (token, weight) pairs, at most CHUNK_LENGTH
    segment: int = 0  # which BREAK segment it belongs to


@dataclass
class ChunkPlan:
    chunks: list[Chunk]
    split_tags: list[tuple[int, list]]  # (chunk index before the cut, tokens of the tag that was cut)


def chunk_segments(segments: Sequence[Sequence[tuple]], is_comma: Callable[[object], bool],
                   backtrack: int = DEFAULT_BACKTRACK, chunk_length: int = CHUNK_LENGTH) -> ChunkPlan:
    """Chunk each segment's (token, weight) stream; every segment starts a new chunk.

    A segment with no tokens makes no chunk; a prompt with no tokens at all makes one empty chunk
    (what ComfyUI gives an empty prompt).
    """
    if not 0 <= backtrack < chunk_length:
        raise ValueError(f"FlowAnime: 'comma_backtrack' must be between 0 and {chunk_length - 1}, got {backtrack}.")
    chunks: list[Chunk] = []
    split_tags = []
    for seg_index, stream in enumerate(segments):
        if not stream:
            continue
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
                    split_tags.append((len(chunks), _tag_at(stream, pos, is_comma)))
                chunks.append(chunk)
                chunk, last_comma = Chunk(segment=seg_index), -1
            chunk.tokens.append(pair)
        chunks.append(chunk)
    if not chunks:
        chunks.append(Chunk())
    return ChunkPlan(chunks, split_tags)


def _tag_at(stream, pos, is_comma):
    """The comma-delimited run of tokens around position pos."""
    start = pos
    while start > 0 and not is_comma(stream[start - 1][0]):
        start -= 1
    end = pos
    while end < len(stream) and not is_comma(stream[end][0]):
        end += 1
    return [pair[0] for pair in stream[start:end]]


def layout(chunk: Chunk, start_token, end_token, pad_token, chunk_length: int = CHUNK_LENGTH) -> list[tuple]:
    """ComfyUI's per-chunk layout: [start] + tokens + [end] + pad, all extra tokens at weight 1."""
    out = [] if start_token is None else [(start_token, 1.0)]
    out += [(t, w) for t, w in chunk.tokens]
    if end_token is not None:
        out.append((end_token, 1.0))
    full = chunk_length + (start_token is not None) + (end_token is not None)
    out += [(pad_token, 1.0)] * (full - len(out))
    return out
