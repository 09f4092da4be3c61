"""Fault suite, prompt cores: hostile prompts through the normaliser and the chunker (issue 12).

Regex and loop work over user text holds the interpreter lock: nothing (not even ComfyUI's Cancel)
can interrupt it, so every such pass must be linear. Each guard times a prompt at size n and 4n
and allows a generous margin over linear growth (quadratic growth would be 16x), plus an absolute
cap. The sizes are small enough that a quadratic pass fails in seconds instead of hanging CI.
"""

import time

import pytest

from flowanime.prompt.booru import NormalizeOptions, normalize, preset_options, split_break
from flowanime.prompt.chunking import (
    MAX_CHUNKS,
    MAX_PAREN_DEPTH,
    MAX_PROMPT_CHARS,
    PromptTooLarge,
    check_prompt,
    chunk_cap,
    chunk_segments,
    matched_paren_depth,
)

pytestmark = pytest.mark.faults

ALL_OPTIONS = NormalizeOptions(drop_quality_tags=True, artists_to_own_chunk=True, lowercase=True)


def best_time(fn, arg, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(fn, make, n, cap_s=5.0):
    """fn(make(4n)) may take at most 8x fn(make(n)) (+ 0.3 s of slack for a busy machine)."""
    small, large = best_time(fn, make(n)), best_time(fn, make(4 * n))
    assert large <= cap_s, f"{large:.2f} s at size {4 * n}"
    assert large <= 8 * small + 0.3, f"{small:.3f} s at n={n}, {large:.3f} s at 4n: not linear"


HOSTILE = {
    # item 1: the weight regex backtracked quadratically on a long digit run with no closing number
    "long weight digits": lambda n: "(a:" + "1" * n + "x)",
    "long weight digits and dot": lambda n: "(a:" + "1" * n + "." + "2" * n + "x)",
    "spaces after a weight colon": lambda n: "(a:" + " " * n + "x)",
    "many weight colons": lambda n: "(a" + ":1" * n + "x)",
    "digits then spaces": lambda n: "(a:" + "1" * n + " " * n + "x)",
    "one huge tag": lambda n: "a" * (10 * n),
    "many tags": lambda n: "l_h, " * n,
    "many commas": lambda n: "," * (10 * n),
    "many escapes": lambda n: "\\(" * n,
    "unbalanced opens": lambda n: "(" * n + "a",
    "unbalanced closes": lambda n: "a" + ")" * n,
    "shallow groups": lambda n: "((a), " * n,
    "emoticons": lambda n: ">:(, " * n,
    "kaomoji": lambda n: "^_^ " * n,
    "control characters": lambda n: "tag\x00\x07\x1b, " * n,
    "bidi and zero-width": lambda n: "\u202etag\u202c\u200b\u2066, " * n,
    "break flood": lambda n: "tag BREAK " * n,
    "and flood": lambda n: "tag AND " * n,
    "and inside open groups": lambda n: "(" * n + "AND " * n,
    "ands between brackets": lambda n: "[a AND b] AND (c) AND " * n,
    "break words": lambda n: "BREAK" * n,
    "sentence ends": lambda n: "a." * n,
    "sentence ends inside pieces": lambda n: "A girl stands on a bridge, " + "holding an umbrella. 1girl, " * n,
    "a long word before a sentence end": lambda n: "A girl with " + "a" * (10 * n) + ". b, c",
    "score tags": lambda n: "score_" + "9" * n + "x",
    "one tag per line": lambda n: "long_hair\n" * n,
    "capitals before parentheses": lambda n: "AB(" * n + "x" + ")" * n,
    "brackets holding commas": lambda n: "[a, {b, " * n + "c" + "}]" * n,
    "unclosed brackets": lambda n: "[a, {b, " * n,
    "file names": lambda n: "a_b <lora:x_y:1> __c__ " * n,
    "capitals and qualifiers": lambda n: "A(b) " * n,
    "blank lines": lambda n: "a" + "\r\n \n" * n + "b",
    "line breaks in a group": lambda n: "(" + "a\n" * n + ":1.2)",
    "wide commas and spaces": lambda n: "a \uff0c " * n + "\u3001" * n + " " * n + "\uff0c",
    "wide commas in CJK prose": lambda n: "\u5c11\u5973\uff0c" * n,
    "full-width weight digits": lambda n: "\uff08a\uff1a" + "\uff11" * n + "x\uff09",
    "full-width weight colons": lambda n: "\uff08a" + "\uff1a1" * n + "x\uff09",
    "full-width opens": lambda n: "\uff08" * n + "a\uff1a1.2\uff09",
    "quality lists in braces": lambda n: "{" + "masterpiece, " * n + "best quality}",
    "nested full-width groups": lambda n: "\uff08" * n + "a\uff1a1.2" + "\uff09" * n,
    "nested full-width groups and commas": lambda n: ("\uff08" + "\uff0c" * 3) * n + "a" + "\uff09" * n,
    "full-width LoRA tags left open": lambda n: "\uff1clora\uff1a" * n + "\uff1a1" * n,
    "full-width LoRA tag, long name": lambda n: "\uff1clora\uff1a" + "a\uff1a" * n + "\uff1e",
    "full-width colons before letters": lambda n: "\uff1aa\u521d\uff1ab1\uff1ac" * n,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_normaliser_runs_in_linear_time_on_hostile_prompts(name):
    make = HOSTILE[name]
    assert_linear(lambda text: normalize(text, ALL_OPTIONS), make, 2500)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_normaliser_output_is_idempotent_on_hostile_prompts(name):
    text = HOSTILE[name](300)
    once = normalize(text, ALL_OPTIONS)
    assert normalize(once, ALL_OPTIONS) == once


def test_the_weight_regex_is_linear_on_the_issue_prompt():
    """Item 1: "(a:" + "1" * 40000 + "x)" froze ComfyUI for ~36 s."""
    start = time.perf_counter()
    out = normalize("(a:" + "1" * 40000 + "x)")
    assert time.perf_counter() - start < 2.0
    assert out.startswith("(a:1")


def test_weights_are_still_read_after_the_linear_rewrite():
    for weight in (":1.2", ":-1.", ":+2", ":.5"):
        assert normalize(f"(long_hair{weight})") == f"(long hair{weight})"
    assert normalize("1girl, (blue_eyes, long_hair:1.2), smile") == "1girl, (blue eyes, long hair:1.2), smile"
    for not_a_weight in ("(long_hair:x)", "(long_hair:1.2.3)", "(long_hair:)"):
        assert normalize(not_a_weight) == not_a_weight.replace("_", " ")


@pytest.mark.parametrize("depth", [MAX_PAREN_DEPTH + 1, 2000, 40000])
def test_deep_parentheses_normalise_without_recursion(depth):
    """Item 8: 2000-deep parentheses raised RecursionError in the normaliser (now an explicit stack)."""
    text = "(" * depth + "long_hair" + ")" * depth
    start = time.perf_counter()
    assert normalize(text) == "(" * depth + "long hair" + ")" * depth
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("preset", ["nekofantasia", "rouwei", "nai-v2-fm", "anima"])
@pytest.mark.parametrize("opening, closing", [("(", ")"), ("\uff08", "\uff09")])
def test_deep_parentheses_normalise_under_every_preset(preset, opening, closing):
    """rouwei's style-tag test recursed into groups: 329-deep parentheses raised RecursionError (a review
    found it); full-width ones are read as parentheses too."""
    text = opening * 2000 + "flat_colors" + closing * 2000
    assert normalize(text, preset_options(preset, NormalizeOptions())).count("(") == 2000


@pytest.mark.parametrize("depth", [MAX_PAREN_DEPTH + 1, 2000, 40000])
def test_deep_parentheses_are_a_clear_error_before_the_encoder(depth):
    """ComfyUI's own weight parser recurses once per level: the encoder refuses deep nesting first."""
    with pytest.raises(PromptTooLarge, match="parentheses"):
        check_prompt("(" * depth + "tag" + ")" * depth, "text")


def test_nesting_up_to_the_cap_normalises():
    text = "(" * MAX_PAREN_DEPTH + "long_hair" + ")" * MAX_PAREN_DEPTH
    assert normalize(text) == "(" * MAX_PAREN_DEPTH + "long hair" + ")" * MAX_PAREN_DEPTH


def test_matched_depth_counts_only_matched_escaped_free_parentheses():
    assert matched_paren_depth("((a)") == 1
    assert matched_paren_depth("((a))") == 2
    assert matched_paren_depth("\\(\\(a\\)\\)") == 0
    assert matched_paren_depth(")(" * 1000) == 1
    assert matched_paren_depth("(" * 5000 + "a") == 0


def test_a_prompt_over_the_size_cap_is_refused_with_its_size():
    with pytest.raises(PromptTooLarge, match=f"{MAX_PROMPT_CHARS:,}"):
        check_prompt("a" * (MAX_PROMPT_CHARS + 1), "text")
    check_prompt("a" * MAX_PROMPT_CHARS, "text")


# --- BREAK floods (item 6) --------------------------------------------------------------------------

COMMA = ","


def streams(text, tokens_per_item=1):
    """A stand-in tokenizer: one token per word, a comma token per comma."""
    out = []
    for segment in split_break(text):
        stream = []
        for n, item in enumerate(segment):
            if n:
                stream.append((COMMA, 1.0))
            stream += [(word, 1.0) for word in item.split()] * tokens_per_item
        out.append(stream)
    return out


def test_empty_break_segments_cost_no_chunk():
    plan = chunk_segments(streams("a BREAK BREAK BREAK b BREAK"), lambda t: t == COMMA)
    assert [c.tokens for c in plan.chunks] == [[("a", 1.0)], [("b", 1.0)]]


def test_a_break_flood_is_refused_with_the_cap_in_the_message():
    """Item 6: "tag BREAK " * 10000 became 10,000 CLIP chunks (stock ComfyUI: 267)."""
    text = "tag BREAK " * 10000
    start = time.perf_counter()
    with pytest.raises(PromptTooLarge, match="BREAK") as err:
        chunk_segments(streams(text), lambda t: t == COMMA)
    assert time.perf_counter() - start < 2.0
    assert "CLIP chunks" in str(err.value)


def test_chunk_cap_is_at_least_twice_what_comfyui_makes_and_the_floor():
    assert chunk_cap(0) == chunk_cap(75 * 10) == 64
    assert chunk_cap(10000) == 2 * 134  # "tag, " * 5000: 10,000 tokens, 134 chunks in CLIPTextEncode
    assert chunk_cap(10**9) == MAX_CHUNKS


def test_a_long_prompt_without_break_stays_under_the_cap():
    """10,000 tokens of tags encode (README): backtracking keeps each chunk at least 56 tokens full."""
    plan = chunk_segments(streams("long hair, " * 3400), lambda t: t == COMMA)
    assert len(plan.chunks) <= chunk_cap(3400 * 3)


def test_a_moderate_number_of_breaks_still_encodes():
    plan = chunk_segments(streams("by artist BREAK " * 40 + "1girl"), lambda t: t == COMMA)
    assert len(plan.chunks) == 41

