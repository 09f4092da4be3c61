"""A1111-style chunking: BREAK segments, 75-token chunks, comma backtracking."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowanime.prompt.chunking import CHUNK_LENGTH, CUT_CONTEXT, chunk_segments, layout

COMMA = 0


def is_comma(t):
    return t == COMMA


def stream(*tokens):
    return [(t, 1.0) for t in tokens]


def tag(first, n):
    return list(range(first, first + n))


def test_long_tagless_stream_is_cut_at_75_and_the_cut_is_reported():
    plan = chunk_segments([stream(*tag(1, 80))], is_comma)
    assert [len(c.tokens) for c in plan.chunks] == [75, 5]
    assert len(plan.split_tags) == 1 and plan.split_tags[0][0] == 0


def test_comma_backtracking_moves_the_tag_after_the_last_comma():
    a, b = tag(1, 70), tag(100, 10)
    plan = chunk_segments([stream(*a, COMMA, *b)], is_comma, backtrack=20)
    assert [t for t, _ in plan.chunks[0].tokens] == a + [COMMA]
    assert [t for t, _ in plan.chunks[1].tokens] == b
    assert plan.split_tags == []


def test_backtracking_off_or_too_far_back_cuts_the_tag():
    a, b = tag(1, 70), tag(100, 10)
    for backtrack in (0, 4):  # the comma sits 5 tokens back from the end of the chunk
        plan = chunk_segments([stream(*a, COMMA, *b)], is_comma, backtrack=backtrack)
        assert [len(c.tokens) for c in plan.chunks] == [75, 6]
        assert plan.split_tags and plan.split_tags[0][1] == b


def test_a_tag_ending_exactly_at_the_boundary_is_not_reported():
    plan = chunk_segments([stream(*tag(1, 75), COMMA, 200)], is_comma)
    assert plan.split_tags == []


def test_every_segment_starts_a_chunk_and_empty_ones_make_none():
    plan = chunk_segments([stream(1, 2), [], stream(3)], is_comma)
    assert [[t for t, _ in c.tokens] for c in plan.chunks] == [[1, 2], [3]]
    assert [c.segment for c in plan.chunks] == [0, 2]
    assert [c.tokens for c in chunk_segments([[], []], is_comma).chunks] == [[]]


def test_layout_is_comfyuis_start_tokens_end_pad():
    plan = chunk_segments([stream(5, 6)], is_comma)
    out = layout(plan.chunks[0], 49406, 49407, 0)
    assert len(out) == 77 and out[:4] == [(49406, 1.0), (5, 1.0), (6, 1.0), (49407, 1.0)]
    assert set(out[4:]) == {(0, 1.0)}


def test_bad_backtrack_names_the_setting():
    with pytest.raises(ValueError, match="'comma_backtrack'"):
        chunk_segments([stream(1)], is_comma, backtrack=75)


segments_st = st.lists(st.lists(st.integers(0, 5), max_size=200), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(segments_st, st.integers(0, 74))
def test_chunking_keeps_every_token_in_order_and_chunks_fit(segments, backtrack):
    plan = chunk_segments([stream(*s) for s in segments], is_comma, backtrack)
    assert all(len(c.tokens) <= 75 for c in plan.chunks)
    for index, seg in enumerate(segments):
        got = [t for c in plan.chunks if c.segment == index for t, _ in c.tokens]
        assert got == seg
    starts = [c.segment for c in plan.chunks if c.tokens]
    assert starts == sorted(starts)  # a chunk never mixes segments


def test_a_cut_in_a_long_comma_free_run_reports_a_bounded_window_in_linear_work():
    """Prose with no comma is cut at every chunk: each cut reports at most CUT_CONTEXT tokens either
    side, marked as clipped, and the comma checks stay linear in the prompt (hostile input)."""
    checks = 0

    def counting_is_comma(token):
        nonlocal checks
        checks += 1
        return is_comma(token)

    n = 20_000
    plan = chunk_segments([stream(*([7] * n))], counting_is_comma, backtrack=0)
    assert len(plan.chunks) == -(-n // CHUNK_LENGTH) and len(plan.split_tags) == len(plan.chunks) - 1
    assert all(len(tokens) <= 2 * CUT_CONTEXT and clipped for _, tokens, clipped in plan.split_tags)
    assert checks <= 4 * n
    short = chunk_segments([stream(*tag(1, 70), COMMA, *tag(100, 10))], is_comma, backtrack=0)
    assert [(tokens, clipped) for _, tokens, clipped in short.split_tags] == [(tag(100, 10), False)]
