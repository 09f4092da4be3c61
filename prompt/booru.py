"""Booru-tag prompt normaliser (plain Python).

What it does to a prompt, and why:
- Danbooru writes tags with underscores (`long_hair`); the text encoders were trained on spaces.
  Underscores become spaces, except in the tags where they are the tag: the kaomoji list used by
  tagcomplete, wd14-tagger and imgutils (`^_^`, `>_<`, `o_o`...), Pony/Anima `score_N` tags and Pony's
  `source_anime` and `rating_explicit` kin.
  An underscore marks a tag: `love_live!` and `super_smash_bros.` are tags, not sentences.
- `name_(qualifier)` tags (`karin_(blue_archive)`, `oil painting (medium)`) carry parentheses that
  ComfyUI's weight parser would read as emphasis; they are escaped (`karin \\(blue archive\\)`), as
  are emoticons such as `>:(`. Weight syntax the user wrote, `(tag:1.2)` and `(tag)`, is kept, and
  what is already escaped is not escaped again.
- Commas and white space are tidied, duplicate tags dropped within a BREAK segment (the first is
  kept; each segment is encoded on its own, so another segment keeps its copy), BREAK kept as the
  chunk separator (upper-case, outside brackets, as A1111 reads it), natural-language sentences,
  `embedding:` and `<lora:...>` and `@artist` / `by artist` tags kept as written.
- Options: drop quality tags, gather artist tags into their own BREAK segment, lower-case, and with a
  tag list (tags.py): resolve aliases, order tags by category, report the tags the list does not know.

A few linear passes read the prompt: escapes are masked by one regular expression (no nested
quantifier), commas, parentheses and BREAKs are found by str.split (qualifier parentheses blanked first
by another such expression), a stack (never recursion) matches parentheses and builds the items; each
character is then looked at a bounded number of times, however deep the brackets nest. The tags are
then read in bulk: most take a short path of plain string steps (or, with a tag list, one look-up of
the spelling the list itself writes), the rest the general steps; a property test holds them equal.

normalize() is idempotent and never loses a tag it was not asked to drop.
"""

from __future__ import annotations

import gc
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import itemgetter

# Kaomoji whose underscores are part of the tag (toriato/stable-diffusion-webui-wd14-tagger #7 list,
# used verbatim by tagcomplete and imgutils), plus t_t and o_x from the current Danbooru tag list.
KAOMOJI = frozenset({
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@",
    "^_^", "o_o", "u_u", "x_x", "|_|", "||_||", "t_t", "o_x",
})
# Danbooru's face tags without brackets, underscores, dots or backslashes (general tags of the bundled
# list with 1-2 alphanumerics in at most 4 characters): in `(:d)` their parentheses are emphasis, as
# ComfyUI reads them, not part of a face.
FACE_TAGS = frozenset({
    ":d", ":o", ":3", ";d", ":p", ":q", ":t", ";o", "d:", "3:", ";p", ";q", ":i", ";3", ":x", "c:", ">o<", ":c",
    ":s", "uu~", "d;", ";t", "^q^", "3;", ">3<", "^v^", "^3^", ":v", "x<",
})
SCORE_TAG = re.compile(r"score_\d+(_up)?", re.IGNORECASE)
# Pony's source and rating tags, trained with their underscores as the score tags were.
PONY_TAGS = frozenset({"source_anime", "source_cartoon", "source_furry", "source_pony",
                       "rating_safe", "rating_questionable", "rating_explicit"})
PEOPLE_TAG = re.compile(r"(?:\d+\+?|multiple |6\+)(?:girl|boy|other)s?", re.IGNORECASE)

# Tags that rate the image rather than describe it. Nekofantasia's card: none were ever trained.
QUALITY_TAGS = frozenset({
    "masterpiece", "best quality", "high quality", "great quality", "amazing quality", "good quality",
    "normal quality", "medium quality", "low quality", "bad quality", "worst quality", "very aesthetic",
    "aesthetic", "displeasing", "very displeasing", "good score", "bad score", "worse score", "worst score",
    "best detail", "worst detail",
})

BREAK = "BREAK"
MAX_PROMPT_CHARS = 1_000_000  # ~60,000 tags; beyond this no encoder would use the text anyway

# Control characters mean nothing to any encoder (tab and newlines are white space and stay), and a
# zero-width space is a word break (CLIP's tokenizer ends a word there): both become spaces. Bidi
# overrides, soft hyphens and joiners of words are invisible and would make two equal-looking tags
# differ. Zero-width (non-)joiners stay: they shape emoji and scripts.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b]")
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

# What the parser reacts to: an escape (a backslash and the character after it, which is text), then,
# outside escapes, a parenthesis, a comma, or BREAK standing alone (white space or a comma, or the start
# or end of the text, on both sides).
_ESCAPE = re.compile(r"\\.", re.S)
# A qualifier, `karin_(blue_archive)`: parentheses right after text in the same item, with no other
# parenthesis, comma or BREAK inside, can only be text (weight syntax encloses a whole item); read as
# text at once, they need no group. ("B" stays out: a BREAK inside would end an emoticon's piece.) _scan
# blanks them (same length) before it looks for parentheses.
_QUALIFIER = re.compile(r"\((?<=[^\s,()\[{]\()[^(),B]*\)")
_UNESCAPED_PAREN = re.compile(r"(?<!\\)([()])")
_ARTIST_PREFIXES = ("@", "by ", "artist:")
_VERBATIM_PREFIXES = ("embedding:", "<lora:", "<lyco:", "<hypernet:")
_NUMBER_CHARS = frozenset("0123456789.+-")
_PEOPLE_FIRST = frozenset("0123456789m")  # PEOPLE_TAG's first characters, the cheap test before it
# Period and rating tags of the Danbooru-trained models (Anima, NoobAI, Illustrious; Nekofantasia's card
# names the ratings too): not Danbooru tags, but metadata that Anima's tag order puts first, beside the
# quality tags. `year 2024` goes with them.
TIME_AND_RATING_TAGS = frozenset({"newest", "recent", "mid", "early", "old",
                                  "general", "safe", "sensitive", "questionable", "nsfw", "explicit"})
YEAR_TAG = re.compile(r"year \d{4}")


def _general_category(low: str) -> str:
    """An untyped tag's category: people (1girl), period or rating metadata, or general."""
    if low[:1] in _PEOPLE_FIRST and PEOPLE_TAG.fullmatch(low):
        return PEOPLE
    if low in TIME_AND_RATING_TAGS or (low[:5] == "year " and YEAR_TAG.fullmatch(low)):
        return META
    return GENERAL

# Item categories, for the presets' tag order.
TEXT, ARTIST, QUALITY, META, PEOPLE, CHARACTER, COPYRIGHT, GENERAL = (
    "text", "artist", "quality", "meta", "people", "character", "copyright", "general")
_CATEGORIES = (TEXT, ARTIST, QUALITY, META, PEOPLE, CHARACTER, COPYRIGHT, GENERAL)
_LIST_CATEGORIES = {1: ARTIST, 3: COPYRIGHT, 4: CHARACTER, 5: META}  # the tag list's categories that order a prompt


@dataclass(frozen=True)
class NormalizeOptions:
    drop_quality_tags: bool = False
    artists_to_own_chunk: bool = False
    lowercase: bool = False
    resolve_aliases: bool = False  # needs a tag list
    artist_prefix: str = ""  # "by " or "@": how artist tags are written ("" keeps each as written)
    style_chunk: str = ""  # "first" / "last": artists (style and quality tags) in their own BREAK segment there
    tag_order: tuple = ()  # categories in prompt order; those not named keep their place after them
    remove_break: bool = False  # sequence encoders (Anima's Qwen) have no chunks: BREAK means nothing


# Per-model presets, from the model cards in the README. "custom" uses the node's options as set.
PRESETS = {
    # Nekofantasia 0.1 (SD3.5-M): no quality tags were ever trained; underscores to spaces.
    "nekofantasia": NormalizeOptions(drop_quality_tags=True),
    # RouWei 0.8: artists written `by x`, in a separate CLIP chunk; card example
    # "by kantoku, by wlop, best quality, masterpiece BREAK 1girl, ...".
    "rouwei": NormalizeOptions(artist_prefix="by ", style_chunk="first"),
    # nai-v2-fm: "1girl/1boy, character name, from what series, everything else in any order, artists,
    # quality/metadata tags", in one list: the card names no BREAK and no `by`, and its captions are a
    # tagger's (bare artist names), so artists stay as written.
    "nai-v2-fm": NormalizeOptions(tag_order=(PEOPLE, CHARACTER, COPYRIGHT, GENERAL, TEXT, ARTIST, QUALITY, META)),
    # Anima: quality/meta, 1girl, character, series, @artist, general tags; natural language kept;
    # its Qwen encoder has no 75-token chunks, so no BREAK.
    "anima": NormalizeOptions(artist_prefix="@", remove_break=True,
                              tag_order=(QUALITY, META, PEOPLE, CHARACTER, COPYRIGHT, ARTIST, GENERAL, TEXT)),
}
PRESET_NAMES = ("custom", *PRESETS)


def preset_options(preset: str, custom: NormalizeOptions) -> NormalizeOptions:
    """The options a preset sets; lowercase and alias resolution stay the user's."""
    if preset == "custom":
        return custom
    if preset not in PRESETS:
        raise ValueError(f"FlowAnime: unknown 'preset' {preset!r}; choose one of {', '.join(PRESET_NAMES)}.")
    base = PRESETS[preset]
    return NormalizeOptions(base.drop_quality_tags, base.artists_to_own_chunk, custom.lowercase, custom.resolve_aliases,
                            base.artist_prefix, base.style_chunk, base.tag_order, base.remove_break)


# --- small text helpers -----------------------------------------------------------------------------


def clean_text(text: str) -> str:
    return _clean(text)[0]


# Letters, digits and the underscore as an input method left in full width types them: CLIP's tokenizer
# reads them as byte tokens that spell nothing, where T5's NFKC reads them as ASCII. One character for one.
_FULL_WIDTH_WORD_CHARS = {code: code - 0xFEE0 for code in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B),
                                                          0xFF3F, *range(0xFF41, 0xFF5B))}


# Punctuation an input method left in full width, in a run that touches a letter, digit or underscore
# (after the translation above): `ｋ－ｏｎ！` is `k-on!`, `ｆａｔｅ／ｓｔａｙ` `fate/stay`, `＠ａｒｔｉｓｔ`
# `@artist`, `＾＿＾` `^_^`. Brackets, colon, comma, `＜＞｜＼＂` are weight syntax or its neighbours, left to
# the syntax rules; a run among other scripts is that language's (`かわいい！`, `（＾ω＾）`).
_FULL_WIDTH_PUNCTUATION_TO_ASCII = {code: code - 0xFEE0 for code in (
    0xFF01, *range(0xFF03, 0xFF07), 0xFF0A, 0xFF0B, *range(0xFF0D, 0xFF10), 0xFF1B, 0xFF1D, 0xFF1F, 0xFF20, 0xFF3E,
    0xFF40, 0xFF5E)}
_FULL_WIDTH_PUNCTUATION_RUN = re.compile(f"[{''.join(map(chr, _FULL_WIDTH_PUNCTUATION_TO_ASCII))}]+")


def _is_ascii_word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def _punctuation_beside_words_as_ascii(text: str) -> str:
    """Linear: each maximal run is found once by the regex and its two neighbours read."""
    pieces, last = [], 0
    for m in _FULL_WIDTH_PUNCTUATION_RUN.finditer(text):
        start, end = m.span()
        if ((start and _is_ascii_word_char(text[start - 1]))
                or (end < len(text) and _is_ascii_word_char(text[end]))):
            pieces += (text[last:start], m.group().translate(_FULL_WIDTH_PUNCTUATION_TO_ASCII))
            last = end
    return text if not pieces else "".join(pieces) + text[last:]


# A full-width colon before an ASCII letter cannot begin a weight: `：ｄ`, `ｒｅ：ｚｅｒｏ`, `ａｒｔｉｓｔ：ｗｌｏｐ`.
# Right after a CJK word or a digit it is the language's (`版本：masterpiece`, `画质2：Original`). Elsewhere
# the weight rules decide (`（１６：９）` is a ratio, `(aspect ratio 4:3)` would weigh 3), and a tag the
# list knows with an ASCII colon is found in look_up (`ｄ：`, `：３`).
_COLON_BEFORE_LETTER = re.compile("\uff1a(?=[A-Za-z])")


def _colons_before_letters_as_ascii(text: str) -> str:
    """Linear: each such colon is found once by the regex and the character before it read."""
    def unless_after_a_word(m: re.Match) -> str:
        left = text[m.start() - 1] if m.start() else ""
        return m.group() if left and (left in "0123456789" or _is_cjk_word_character(left)) else ":"

    return _COLON_BEFORE_LETTER.sub(unless_after_a_word, text)


# A LoRA tag (A1111's `<lora:name:weight>`, which LoRA-loading nodes read from the prompt) typed with an
# input method left on: its brackets and colons are ASCII (`＜ｌｏｒａ：ｘ：０．８＞` → `<lora:x:0.8>`).
_TYPED_LORA_TAG = re.compile("[<\uff1c](?:lora|lyco|hypernet)[:\uff1a][^<>\uff1c\uff1e]*[>\uff1e]", re.IGNORECASE)
_LORA_SYNTAX_TO_ASCII = {0xFF1C: "<", 0xFF1E: ">", 0xFF1A: ":"}


def _lora_tags_as_ascii(text: str) -> str:
    """Linear: a match stops at the first angle bracket, so no character is scanned twice."""
    return _TYPED_LORA_TAG.sub(lambda m: m.group().translate(_LORA_SYNTAX_TO_ASCII), text)


def _clean(text: str) -> tuple[str, bool]:
    """The text cleaned, and whether it was printable (then its only white space is " ")."""
    if not isinstance(text, str):
        raise TypeError(f"FlowAnime: the prompt must be text, got {type(text).__name__}.")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"FlowAnime: the prompt ('text') has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    printable = text.isprintable()
    if not printable:  # first: what reads a neighbour must see the one that stays (`ａ\u00ad！`)
        text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    if not text.isascii():
        text = _colons_before_letters_as_ascii(_punctuation_beside_words_as_ascii(text.translate(_FULL_WIDTH_WORD_CHARS)))
        # one spelling per tag: `é` typed as `e` + U+0301 (macOS) is the tag list's `é`
        text = unicodedata.normalize("NFC", _lora_tags_as_ascii(text))
    return text, printable


# One tag per line is a list: a line break between two lines of text separates them as a comma does,
# unless the line before it ends an item, escapes the break, opens a group or is prose, or the next
# line goes on with a comma or closes a group.
_LINE_BREAK = re.compile(r"(\r\n?|[\n\u2028\u2029])")
# A wide comma still there is CJK prose's (`_wide_commas_as_commas` ran first): prose goes on past it.
_ENDS_ITEM = frozenset(",:\\\uff0c\u3001")
_CONTINUES_ITEM = frozenset(",)\uff0c\u3001")


def _separates(line: str, next_line: str, blank_line: bool = False) -> bool:
    """Whether a line break between `line` and `next_line` (both stripped, not empty) separates two
    items. `>:(` ends an item; a `(` on its own opens a group. Prose goes on over a line break: a last
    item of five words or more, or a sentence's end (`.`, `!`, `?` after three words, or before a
    capital), where tags such as `love_live!`, `k-on!` and `c.c.` end in the same marks; but a
    sentence's end followed by a line of tags separates, and so does a blank line (a paragraph's end).
    A word with an underscore, on either side, is a tag."""
    if line[-1] in _ENDS_ITEM or next_line[0] in _CONTINUES_ITEM:
        return False
    if line[-1] == "(" and (len(line) == 1 or line[-2].isspace() or line[-2] == "("):
        return False
    if blank_line:
        return True
    item = " ".join(line[line.rfind(",") + 1:].rsplit(BREAK, 1)[-1].split())
    space = next_line.find(" ")
    first_word = next_line if space == -1 else next_line[:space]
    if "_" in item or "_" in first_word:  # underscores mark tags
        return True
    if item[-1:] in (".", "!", "?") and (item.count(" ") >= 2 or next_line[0].isupper()):
        return _starts_a_tag_list(next_line)
    return item.count(" ") < 4


def _starts_a_tag_list(line: str) -> bool:
    """A line of tags after a sentence (`...umbrella.⏎long hair, blue eyes`): a comma after a short
    first item that does not start with a capital. Prose goes on otherwise."""
    comma = line.find(",")
    return comma > 0 and not line[0].isupper() and line.count(" ", 0, comma) < 4


def _line_breaks_as_commas(text: str) -> str:
    """The first line break between two lines of text becomes a comma where it separates two items
    (one character for one: positions stay). Linear: each line is stripped and searched once."""
    parts = _LINE_BREAK.split(text)  # text, break, text, break, ..., text
    before = parts[0].strip()  # the last line with text so far ("" before any)
    pending = None  # the first break after it
    blank = False  # a blank line since it
    for index in range(1, len(parts), 2):
        if pending is None and before:
            pending = index
        line = parts[index + 1].strip()
        if line:
            if pending is not None and _separates(before, line, blank):
                parts[pending] = "," + parts[pending][1:]
            pending, before, blank = None, line, False
        elif pending is not None:
            blank = True
    return "".join(parts)


WIDE_COMMAS = "\uff0c\u3001"  # `，` and `、`, as Chinese and Japanese keyboards type a list's commas
_WIDE_COMMA = re.compile(f"[{WIDE_COMMAS}]")
_CJK_START = 0x2E80  # CJK radicals, kana, ideographs, Hangul and beyond
_FULL_WIDTH_ASCII = range(0xFF01, 0xFF5F)  # `（`, `ｌ`, `＿`: ASCII in full width, not a CJK language's words


def _is_cjk_word_character(ch: str) -> bool:
    return ord(ch) >= _CJK_START and ord(ch) not in _FULL_WIDTH_ASCII and ch.isalnum()


def _wide_commas_as_commas(text: str) -> str:
    """`1girl，long_hair`: a full-width or ideographic comma between tags separates them, as `,` does
    (CLIP's tokenizer reads them as other characters). Between two words of a CJK language they stay:
    that is prose. One character for one, so positions stay; linear: each run of spaces (U+3000, a
    Japanese keyboard's, included) beside a comma is read at most twice."""
    chars = list(text)
    for found in _WIDE_COMMA.finditer(text):
        index = found.start()
        left = index - 1
        while left >= 0 and text[left].isspace():
            left -= 1
        right = index + 1
        while right < len(text) and text[right].isspace():
            right += 1
        if not all(0 <= i < len(text) and _is_cjk_word_character(text[i]) for i in (left, right)):
            chars[index] = ","
    return "".join(chars)


# Weight syntax typed with a CJK input method left on: `（long hair：1.2）`, `(smile:１．３)`, `（（masterpiece））`.
# ComfyUI reads no weight or emphasis in full-width parentheses or colons.
_FULL_WIDTH_SYNTAX = re.compile("[\uff08\uff09\uff1a\uff0e\uff10-\uff19]")
_PARENTHESES = re.compile("(?<!\\\\)[()\uff08\uff09]")
_TYPED_NUMBER_CHARS = _NUMBER_CHARS | frozenset("\uff0e" + "".join(map(chr, range(0xFF10, 0xFF1A))))
_TYPED_TO_ASCII = {0xFF1A: ":", 0xFF0E: ".", 0x3000: " ", **{0xFF10 + d: str(d) for d in range(10)}}
# The largest weight typed in full width that is taken for one: above it `（16：9）`, `（年龄：5）` are a
# ratio and an age (written weights stay within 0.5-2; ASCII ones are read up to MAX_WRITTEN_WEIGHT).
MAX_TYPED_WEIGHT = 3.0


class _Runs:
    """Where the runs of a pattern (words, letters, other scripts) lie in a text, to ask in O(log n)
    whether a span holds one: the text is read once for all groups, however deeply they nest."""

    def __init__(self, text: str, pattern: re.Pattern):
        self.starts, self.ends = [], []
        for m in pattern.finditer(text):
            self.starts.append(m.start())
            self.ends.append(m.end())

    def within(self, start: int, stop: int) -> bool:
        index = bisect_right(self.starts, start)
        if index and self.ends[index - 1] > start:  # a run that began before start goes on into the span
            return start < stop
        return index < len(self.starts) and self.starts[index] < stop


_WORD_RUN = re.compile(r"[^\W_]+")
_LETTER_RUN = re.compile(r"[^\W\d_]+")
# Characters that are neither ASCII nor full-width weight syntax (`（）：，、．０-９`, U+3000): CJK words and
# punctuation, kaomoji pieces (`＾ω＾`), accented letters.
_FOREIGN_RUN = re.compile("[^\x00-\x7f\uff08\uff09\uff1a\uff0c\u3001\uff0e\uff10-\uff19\u3000]+")
_GROUP_EDGES = frozenset(",()\uff0c\u3001\uff08\uff09")  # where a group stands apart: an item's edge or another group


def _group_tail(text: str, opening: int, closing: int, letters: _Runs, foreign: _Runs):
    """The weight that ends the group text[opening:closing + 1]: (colon position, ASCII weight) when it
    reads as one: 0 to MAX_TYPED_WEIGHT, after text of letters with no CJK word (`（黒髪：0.8）`, `（年龄：3）`
    are prose), and not a whole number after a digit (`（4：3）`, `（aspect ratio 3：2）` are ratios;
    `（score_9：1.2）` is a weight); False when a colon and a number end it but are no weight, None when
    none does. Scans back over spaces and digits only."""
    span = _weight_span(text, opening + 1, closing, _TYPED_NUMBER_CHARS, ":\uff1a")
    if span is None or span[1] == span[2]:
        return None
    colon, j, i = span
    number = text[j:i].translate(_TYPED_TO_ASCII)
    if not _is_number(number) or (number[:1] == "0" and number[1:2].isdigit()):
        return False
    head_end = colon
    while head_end > opening + 1 and text[head_end - 1].isspace():
        head_end -= 1
    if (not 0 <= float(number) <= MAX_TYPED_WEIGHT or not letters.within(opening + 1, colon)
            or foreign.within(opening + 1, colon)  # `（年龄：3）`, `（身高：1.6）`: CJK prose, not a tag's weight
            or ("." not in number and text[head_end - 1].translate(_TYPED_TO_ASCII).isdigit())):  # `（4：3）` a ratio
        return False
    return colon, number


def _stands_apart(text: str, opening: int, closing: int) -> bool:
    """Whether the group text[opening:closing + 1] stands among ASCII text as its ASCII twin would: the
    nearest character on each side (past spaces) is ASCII, a comma or a parenthesis of either width, or
    the text's edge (`，（mutual gaze），`, `（a）（b）`, `1girl （smile）`, `1girl⏎（smile）`); not a CJK
    word's or punctuation's (`凝视（mutual gaze）`, `。（masterpiece）`, `「ツインテール」（twintails）`).
    Reads only the spaces around it."""
    before, after = opening - 1, closing + 1
    while before >= 0 and text[before].isspace():
        before -= 1
    while after < len(text) and text[after].isspace():
        after += 1
    return all(i < 0 or i >= len(text) or text[i].isascii() or text[i] in _GROUP_EDGES for i in (before, after))


def _typed_syntax_as_ascii(text: str) -> str:
    """Parentheses, colons and digits typed in full width that are weight syntax become ASCII:
    - a group ending in a weight that reads as one (see _group_tail), `（long hair：1.2）`, `(smile：１．３)`;
    - a group with one parenthesis of each width, `(2girls）`;
    - a group of ASCII text (full-width weight syntax aside) among ASCII text (see _stands_apart),
      `，（mutual gaze），`, `（（masterpiece））`, `（a）（b）`, and every group inside a converted one.
    Other full-width parentheses are the language's punctuation and stay: `少女（黒髪）`, `凝视（mutual
    gaze）`, `（16：9）`, `（＾ω＾）`. One character for one. Linear: parentheses are paired on a stack, the
    runs of words, letters and other scripts found once and asked by bisection, and each space between
    a group and its neighbours read at most twice."""
    pairs, stack, parent = [], [], {}
    for m in _PARENTHESES.finditer(text):
        if m.group() in "(\uff08":
            parent[m.start()] = stack[-1] if stack else None
            stack.append(m.start())
        elif stack:
            pairs.append((stack.pop(), m.start()))
    if not pairs:
        return text
    pairs.sort()
    words, letters, foreign = _Runs(text, _WORD_RUN), _Runs(text, _LETTER_RUN), _Runs(text, _FOREIGN_RUN)
    chars = None
    converted: dict = {}
    for opening, closing in pairs:
        wide = text[opening] == "\uff08" or text[closing] == "\uff09"
        tail = _group_tail(text, opening, closing, letters, foreign)
        typed_tail = bool(tail) and not text[tail[0]:closing].isascii()
        if not (wide or typed_tail):
            converted[opening] = True  # ASCII syntax already: what it holds is read inside a group
            continue
        if tail is False or not words.within(opening + 1, closing):
            converted[opening] = False
            continue
        up = parent.get(opening)
        convert = bool(tail) or (text[opening] == "(") != (text[closing] == ")")
        if not convert and not foreign.within(opening + 1, closing):  # ASCII text, weight syntax aside
            convert = (up is not None and converted.get(up)) or _stands_apart(text, opening, closing)
        converted[opening] = convert
        if convert:
            if chars is None:
                chars = list(text)
            chars[opening], chars[closing] = "(", ")"
            if tail:
                for index in range(tail[0], closing):
                    chars[index] = chars[index].translate(_TYPED_TO_ASCII)
    return text if chars is None else "".join(chars)


def _has_typed_syntax(text: str) -> bool:
    return not text.isascii() and _FULL_WIDTH_SYNTAX.search(text) is not None and _typed_syntax_as_ascii(text) != text


# What a word processor or an input method types where the tag list has ASCII: `jeanne d’arc (fate)`,
# `valentine＇s day`, `ｄ：`.
_TYPED_PUNCTUATION = {0x2019: "'", 0x2018: "'", 0xFF07: "'", 0xFF1A: ":"}


def _unescape(text: str) -> str:
    return text.replace("\\(", "(").replace("\\)", ")")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def tag_key(tag: str) -> str:
    """How a tag in prompt form is looked up: unescaped, lower-case, single spaces."""
    return _collapse(_unescape(tag)).lower()


def is_sentence(text: str) -> bool:
    """Natural language (Anima, RouWei 0.8 take it): no underscore (underscores mark a tag), and it ends
    like a sentence or has five words or more."""
    return _is_sentence_collapsed(_collapse(text))


def _is_sentence_collapsed(t: str) -> bool:
    return bool(t) and "_" not in t and (t[-1] in ".!?" or t.count(" ") >= 4)


def is_artist(tag: str) -> bool:
    return _names_an_artist(tag.lower())


# `by the window`, `by a river`: a place, not an artist (`by kantoku`)
_NOT_NAMES = frozenset({"the", "a", "an", "his", "her", "my", "your", "our", "their", "its", "this", "that", "these",
                        "those", "some", "one", "two", "each", "itself", "herself", "himself", "themselves"})


def _names_an_artist(low: str) -> bool:
    """`@kantoku`, `by kantoku`, `artist:kantoku` (lower-case text): an artist's name follows."""
    if not low.startswith(_ARTIST_PREFIXES) or low in KAOMOJI:  # "@_@" is a face
        return False
    return not low.startswith("by ") or low[3:].split(" ", 1)[0] not in _NOT_NAMES


def is_quality(tag: str) -> bool:
    return _is_quality_lower(tag.lower())


def _is_quality_lower(key: str) -> bool:
    return key in QUALITY_TAGS or (key.startswith("score_") and SCORE_TAG.fullmatch(key) is not None)


def written_as_listed(name: str, key: str) -> bool:
    """Whether the normaliser, given `name` (a tag list's row name; key: its entry's key) as a tag, makes
    the entry's own prompt form by its plain steps (see _Normalizer.leaves), general before the list's
    category: lower-case printable ASCII without `, : @ \\`, white space collapsed; not a kaomoji, a
    `score_`, `by `, quality, people, period or rating tag, nor what may be a sentence. A tag list maps
    these spellings straight to their entry."""
    if not (name and name.isascii() and name == name.lower() and name == " ".join(name.split())):
        return False
    if "," in name or ":" in name or "@" in name or "\\" in name:
        return False
    if "_" in name:
        if name in KAOMOJI or name in PONY_TAGS or name.startswith("score_"):
            return False
    elif name[-1] in ".!?" or name.count(" ") >= 4:
        return False
    return not (key in QUALITY_TAGS or key.startswith("by ") or _general_category(key) != GENERAL)


def normalize_tag(tag: str, lowercase: bool = False) -> str:
    return _normalize_collapsed(_collapse(tag), lowercase)


def _escape_paren(m: re.Match) -> str:
    return "\\" + m.group()


def _normalize_collapsed(tag: str, lowercase: bool) -> str:
    if "_" in tag:
        key = tag.lower()
        if "\\" in key:
            key = _unescape(key)
        # SCORE_TAG matches only "score_..." in any case (and "ſ" for "s"): "core_" is the cheap test
        if key not in KAOMOJI and key not in PONY_TAGS and (key[1:6] != "core_" or SCORE_TAG.fullmatch(tag) is None):
            tag = " ".join(tag.replace("_", " ").split())
    if "(" in tag or ")" in tag:
        if "\\" in tag:
            tag = _UNESCAPED_PAREN.sub(_escape_paren, tag)
        else:
            tag = tag.replace("(", "\\(").replace(")", "\\)")
    return tag.lower() if lowercase else tag


def _is_emoticon(piece: str) -> bool:
    """`>:(`, `:)`, `\\(^o^)/`, `(o)_(o)`, `(o.o)`: short, no spaces, parentheses, at most two
    alphanumerics. Their parentheses are literal, never weight syntax. Parentheses around a weight
    (`(^_^:1.2)`), a kaomoji or face tag (`(^_^)`, `(:d)`), a word (`(v)`, `(8k)`, `((hd))`) or an abbreviation ending in
    its dot (`((c.c.))`) are emphasis."""
    p = " ".join(piece.split())
    if "( " in p or " )" in p:  # `( :d )` reads as `(:d)`, the way the output writes it
        p = p.replace("( ", "(").replace(" )", ")")
    if len(p) > 10 or not p.strip("()"):  # `))` after `((a, b,`: the edges of groups, no face
        return False
    if _unescape(p).lower() in KAOMOJI:
        return True
    closed = p.rstrip(")")
    if len(closed) < len(p) and _weighs_text(closed):  # `(^_^):1.2)` closes a weighted group
        return False
    inner = closed.lstrip("(")
    if len(closed) - len(inner) == len(p) - len(closed) >= 2 and inner.strip():  # `((b&w))`: no face is doubled
        return False
    if len(inner) < len(p) and "(" not in inner and ")" not in inner:
        if _weighs_text(inner) or inner.lower() in KAOMOJI or inner.lower() in FACE_TAGS:
            return False
        if inner.isalnum():  # `(v)`, `(8k)`: a word, Danbooru's `v` (peace sign) as much as a longer one
            return False
        if inner[-1:] == "." and any(c.isalpha() for c in inner):  # `((c.c.))`: an abbreviation's dot, not a face
            return False
    if _opens_or_closes_a_group(p):
        return False
    return 0 < len(p) and " " not in p and ("(" in p or ")" in p) and sum(c.isalnum() for c in p) <= 2


def _is_bracketed_quality(low: str) -> bool:
    """`{{masterpiece}}`, `[best quality]`, `{masterpiece, best_quality:1.2}`: quality tags in NovelAI's
    emphasis braces or A1111's de-emphasis brackets, as many opening as closing; in a list, every item
    one (`{masterpiece, 1girl}` and a choice `{masterpiece|best quality}` are not)."""
    inner = low.lstrip("[{")
    opened = len(low) - len(inner)
    stripped = inner.rstrip("]}")
    if not 0 < opened == len(inner) - len(stripped):
        return False
    if "," not in stripped:
        return _is_quality_lower(stripped.strip())
    pieces = [_without_weight(" ".join(piece.split())) for piece in stripped.split(",")]
    return any(pieces) and all(_is_quality_lower(piece) or _is_quality_lower(piece.replace("_", " "))
                               for piece in pieces if piece)


def _without_weight(text: str) -> str:
    """`masterpiece:1.2` (a weight written outside its group, `(masterpiece:1.2, best quality)`) ->
    `masterpiece`; other text as it is."""
    head, _, weight = text.rpartition(":")
    return head.strip() if head and _is_number(weight.strip()) else text


def _weighs_text(text: str) -> bool:
    """`a:1.2`, `(^_^):1.2`: text ending in a weight with something before its colon (ComfyUI reads
    `:3` alone as text)."""
    weight = _trailing_weight(text, 0, len(text))
    return weight is not None and text[:weight[1]].strip("( ") != ""


def _opens_or_closes_a_group(piece: str) -> bool:
    """`(v` in `(v, peace sign:1.2)`, `:d)` in `(smile, :d)` and `((a)` in `((a), b)`: parentheses at the
    edges of a piece that holds an alphanumeric, more of them on one side than on the other, are the
    edges of groups around a short tag, not an emoticon (`>:(`, `:)`, `(:` hold none)."""
    inner = piece.lstrip("(")
    opened = len(piece) - len(inner)
    inner = inner.rstrip(")")
    closed = len(piece) - opened - len(inner)
    return opened != closed and "(" not in inner and ")" not in inner and any(c.isalnum() for c in inner)


# The largest weight a written `(tag:w)` is taken to be: Danbooru qualifiers that end in `:number` are
# titles and times (`vertin_(reverse:1999)`, `asai_(00:05)`, told apart by its digits-only `00`);
# weights stay within a few units.
MAX_WRITTEN_WEIGHT = 10.0


def _calls_a_function(text: str) -> bool:
    """`STYLE(A1111)`, `TE(l=a, g=b)`, `AVG(0.5)`: a capitalised name right before a parenthesis is a
    function of a prompt node after this one (comfyui-prompt-control); Danbooru tags are lower-case.
    Linear: one look at the two characters before each parenthesis."""
    at = text.find("(")
    while at != -1:
        if at >= 2 and text[at - 2:at].isalpha() and text[at - 2:at].isupper():
            return True
        at = text.find("(", at + 1)
    return False


def _holds_a_file_name(text: str, lower: str) -> bool:
    """`embedding:name`, `<lora:name:0.8>` and wildcards (`__animals__`, `{__a__|__b__}`, for Dynamic
    Prompts or Impact Pack after this node) anywhere in an item: file names, spelled as on disk. No
    Danbooru tag holds a double underscore."""
    return any(prefix in lower for prefix in _VERBATIM_PREFIXES) or lower.count("__") >= 2


def _holds_a_weighted_group(text: str) -> bool:
    """`1girl (smile:1.2)`: an item that holds a group with an explicit weight (at most
    MAX_WRITTEN_WEIGHT) besides other text: the user's emphasis, not a Danbooru qualifier. Linear: the
    runs that _trailing_weight scans back over end at distinct `)`."""
    if "(" not in text:
        return False
    first_open = text.index("(")
    previous = first_open
    close = text.find(")", first_open)
    while close != -1:
        weight = _trailing_weight(text, first_open, close)
        if weight is not None and abs(float(weight[0][1:])) <= MAX_WRITTEN_WEIGHT:
            opening = text.rfind("(", previous, weight[1])  # within this stretch only: linear
            if opening == -1 or not text[opening + 1:weight[1]].replace(" ", "").isdigit():  # `(00:05)` is a time
                return True
        previous = close
        close = text.find(")", close + 1)
    return False


# A group after white space with more text after it in the same item (`girl (pretty) smiling`). Linear:
# the run inside holds no parenthesis, so each attempt ends where the next may start.
_GROUP_BEFORE_TEXT = re.compile(r"\s\(([^()\\]+)\)\s*[^\s(),]")


def _emphasis_before_text(text: str, tags) -> bool:
    """`girl (pretty) smiling`: the user's emphasis, unless the tag list knows the text up to the group
    (a tag with a qualifier, or with parentheses inside its name, followed by more words)."""
    found = _GROUP_BEFORE_TEXT.search(text)
    if found is None:
        return False
    upto = text[:found.end(1) + 1]
    return tag_key(upto.replace("_", " ")) not in tags and tag_key(text.replace("_", " ")) not in tags


_BREAK_EDGES = frozenset(",()\uff0c\u3001")  # and white space: `a, BREAK, b`, `(x:1.2)BREAK y`, `a，BREAK，b`


def _is_break_edge(ch: str) -> bool:
    """What may stand beside a BREAK. A1111's rule is a word boundary; `@BREAK` and `BREAK_a` stay words
    here (an `@artist` trigger, a tag)."""
    return ch in _BREAK_EDGES or ch.isspace()


def _after_last_break(text: str) -> str:
    """The text after its last BREAK that stands alone, as _scan reads one (where an emoticon's piece
    starts: _drop_emoticon_parens); all of it when there is none."""
    pos = text.rfind(BREAK)
    while pos >= 0:
        end = pos + len(BREAK)
        if (not pos or _is_break_edge(text[pos - 1])) and (end == len(text) or _is_break_edge(text[end])):
            return text[end:]
        pos = text.rfind(BREAK, 0, pos)
    return text


def _is_number(s: str) -> bool:
    """[+-]?(digits[.digits] | .digits), without a regex (a regex here could backtrack)."""
    if s[:1] in ("+", "-"):
        s = s[1:]
    if not s or s.count(".") > 1 or "+" in s or "-" in s:
        return False
    return s.replace(".", "") != ""


# --- the scan -----------------------------------------------------------------------------------------


AND = "AND"


def _and_subprompts(text: str) -> list[str]:
    """The text between the ANDs that stand alone outside parentheses, by BREAK's rule (A1111's
    composable diffusion and the prompt nodes that read it): the parentheses are the weight syntax
    _scan finds, so an emoticon's or an escaped one hides nothing. Only text that holds an AND is scanned."""
    if AND not in text:
        return [text]
    masked = _ESCAPE.sub("\0\0", text) if "\\" in text else text
    end = len(text)
    ands = [pos for pos in _positions(masked, AND)
            if (pos == 0 or _is_break_edge(text[pos - 1])) and (pos + 3 == end or _is_break_edge(text[pos + 3]))]
    if not ands:
        return [text]
    marks = sorted([*((pos, 1 if kind == "(" else -1) for pos, kind in _scan(text)[0] if kind != "B"),
                    *((pos, 0) for pos in ands)])
    parts, start, depth = [], 0, 0
    for pos, step in marks:
        if step:
            depth += step
        elif depth == 0:
            parts.append(text[start:pos])
            start = pos + len(AND)
    parts.append(text[start:])
    return parts


def _positions(text: str, sub: str) -> list[int]:
    """Where sub occurs in text (left to right, no overlaps), found by str.split."""
    width = len(sub)
    return list(accumulate([len(piece) + width for piece in text.split(sub)[:-1]], initial=-width))[1:]


def _blank(m: re.Match) -> str:
    return "\0" * (m.end() - m.start())


def _scan(text: str) -> tuple[list[tuple[int, str]], list[int]]:
    """The prompt's syntax: (position, kind) of every parenthesis that is weight syntax and every BREAK,
    kind "(", ")" or "B", in order; and the positions of the commas. Escapes, emoticon parentheses and
    unmatched parentheses are text.

    Escapes are masked first (each becomes two placeholders: positions stay), so what is left of
    `(`, `)`, `,` and `BREAK` is syntax; each is found by str.split, in linear time."""
    masked = _ESCAPE.sub("\0\0", text) if "\\" in text else text  # clean_text removed every \0
    commas = _positions(masked, ",")
    if commas and ("[" in masked or "{" in masked):
        commas = _outside_brackets(masked, commas)
    unqualified = _QUALIFIER.sub(_blank, masked) if "(" in masked else masked
    found = sorted([*zip(_positions(unqualified, "("), repeat("(")), *zip(_positions(unqualified, ")"), repeat(")")),
                    *zip(_positions(masked, BREAK) if BREAK in masked else (), repeat("B"))])
    positions, kinds, parens, breaks, end = [], [], [], [], len(text)
    for pos, kind in found:
        if kind == "B":
            if (pos and not _is_break_edge(text[pos - 1])) or (pos + 5 < end and not _is_break_edge(text[pos + 5])):
                continue  # part of a word: "BREAKS", "xBREAK"
            breaks.append(pos)
        else:
            parens.append(len(kinds))
        positions.append(pos)
        kinds.append(kind)
    if parens:
        _drop_emoticon_parens(text, positions, kinds, parens, commas, breaks)
        # Parentheses ComfyUI would not match are text too.
        stack = []
        for index in parens:
            if not kinds[index]:
                continue
            if kinds[index] == "(":
                stack.append(index)
            elif stack:
                stack.pop()
            else:
                kinds[index] = ""
        for index in stack:
            kinds[index] = ""
    return [(p, k) for p, k in zip(positions, kinds) if k], commas


def _outside_brackets(masked: str, commas: list[int]) -> list[int]:
    """The commas outside matched `[...]` and `{...}`: A1111's prompt editing `[a, b:c, d:0.5]` and
    alternation, NovelAI's emphasis and Dynamic Prompts' `{a, b|c}` hold whole lists that a later node
    reads, so they are one item (kept as written). An unmatched bracket is text (`{a, [b, c]`: the
    `[b, c]` is one item still). Linear: one pass over the brackets, one over the pairs."""
    marks = sorted([*zip(_positions(masked, "["), repeat("[")), *zip(_positions(masked, "]"), repeat("]")),
                    *zip(_positions(masked, "{"), repeat("{")), *zip(_positions(masked, "}"), repeat("}"))])
    stacks: dict = {"[": [], "{": []}
    pairs = []
    for pos, kind in marks:
        if kind in stacks:
            stacks[kind].append(pos)
        else:
            opened = stacks["[" if kind == "]" else "{"]
            if opened:
                pairs.append((opened.pop(), pos))
    pairs.sort()
    spans: list = []  # the matched pairs' extents merged: inner and crossing pairs are one span
    for opening, closing in pairs:
        if spans and opening < spans[-1][1]:
            if closing > spans[-1][1]:
                spans[-1] = (spans[-1][0], closing)
        else:
            spans.append((opening, closing))
    if not spans:
        return commas
    kept, index = [], 0
    for comma in commas:
        while index < len(spans) and spans[index][1] < comma:
            index += 1
        if not (index < len(spans) and spans[index][0] < comma):
            kept.append(comma)
    return kept


def _drop_emoticon_parens(text, positions, kinds, parens, commas, breaks) -> None:
    """Emoticons are read piece by piece; a piece ends at a comma or a BREAK, as the items of the
    output do, so a second run reads the same pieces. A piece that reads as an emoticon has literal
    parentheses."""
    end, piece, members = len(text), None, []
    for index in [*parens, -1]:
        if index >= 0:
            pos = positions[index]
            c, b = bisect_right(commas, pos), bisect_right(breaks, pos)
            if (c, b) == piece:
                members.append(index)
                continue
        if members:
            pc, pb = piece
            start = max(commas[pc - 1] + 1 if pc else 0, breaks[pb - 1] + len(BREAK) if pb else 0)
            stop = min(commas[pc] if pc < len(commas) else end, breaks[pb] if pb < len(breaks) else end)
            if _is_emoticon(text[start:stop]):
                for member in members:
                    kinds[member] = ""
        if index >= 0:
            piece, members = (c, b), [index]


def _specials(text: str) -> list[tuple[int, str]]:
    """(position, kind) of every parenthesis that is weight syntax, comma and BREAK, in order; kind is
    one of "(", ")", ",", "B"."""
    marks, commas = _scan(text)
    return sorted(marks + [(pos, ",") for pos in commas])


def _split_outside_brackets(text: str, separator: str, width: int) -> list[str]:
    """The text between separators (a kind from _specials) that stand outside brackets."""
    pieces, start, depth = [], 0, 0
    for pos, kind in _specials(text):
        if kind == "(":
            depth += 1
        elif kind == ")":
            depth -= 1
        elif kind == separator and depth == 0:
            pieces.append(text[start:pos])
            start = pos + width
    pieces.append(text[start:])
    return pieces


def break_segments(text: str) -> list[str]:
    """The raw text between BREAKs that stand outside brackets (A1111's rule), BREAK itself removed."""
    return _split_outside_brackets(text, "B", len(BREAK))


def split_break(text: str) -> list[list[str]]:
    """The prompt's comma items (raw, empty ones included), in segments between BREAKs."""
    return [_split_outside_brackets(segment, ",", 1) for segment in break_segments(text)]


# --- the structure ------------------------------------------------------------------------------------

_SEGMENT = None  # marks a BREAK between items at the top level


class _Group:
    """A matched pair of parentheses (or the whole prompt, the root) and the comma items inside it."""

    __slots__ = ("index", "parent", "items", "weight", "whole", "item_start", "run_start", "significant", "only",
                 "led", "kept", "start")

    def __init__(self, index: int, parent: int, start: int):
        self.index, self.parent, self.start = index, parent, start
        self.items: list = []  # (start, end, child group or None) per item (some blank); _SEGMENT at BREAKs
        self.weight = ""  # ":1.2" as written, without spaces
        self.whole = False  # the group is a whole comma item of its parent: weight syntax, not a qualifier
        self.item_start = self.run_start = start
        self.significant = 0  # non-blank parts of the current item so far
        self.only = None  # the current item's one part, if it is a group
        self.led = False  # the current item's first part is a group
        self.kept: list[int] | None = None  # root only, set by _parse: where items start that are kept as written


def _add_run(text: str, g: _Group, end: int) -> None:
    if end > g.run_start and not text[g.run_start:end].isspace():
        if not g.significant:
            g.led = False
        g.significant += 1
        g.only = None


def _end_item(text: str, g: _Group, end: int, kept: list[int]) -> None:
    _add_run(text, g, end)
    if g.significant:
        g.items.append((g.item_start, end, g.only))
        if g.only is not None:
            g.only.whole = True
        elif g.led:
            # `((masterpiece)) ((best quality))`, `(masterpiece) best quality`: no Danbooru tag starts with
            # a parenthesis (qualifiers follow a word), so a group that opens an item is the user's
            # emphasis, and the item is kept as written
            kept.append(g.item_start)
    g.significant, g.only, g.led = 0, None, False


def _weight_span(text: str, start: int, end: int, number_chars=_NUMBER_CHARS, colons=":"):
    """(colon position, number start, number end) if text[start:end] ends in a colon, a number's
    characters and spaces around them, else None. Scans back over spaces and digits only: linear in
    their number."""
    i = end
    while i > start and text[i - 1].isspace():
        i -= 1
    j = i
    while j > start and text[j - 1] in number_chars:
        j -= 1
    k = j
    while k > start and text[k - 1].isspace():
        k -= 1
    return (k - 1, j, i) if k > start and text[k - 1] in colons else None


def _trailing_weight(text: str, start: int, end: int):
    """(":w", position of the colon) if text[start:end] ends in `:w` (ComfyUI's `(x:1.2)`), else None."""
    span = _weight_span(text, start, end)
    if span is not None and _is_number(text[span[1]:span[2]]):
        return ":" + text[span[1]:span[2]], span[0]
    return None


def _parse(text: str) -> tuple[_Group, list[_Group]]:
    """The root and the groups that are weight syntax (live), innermost first. root.kept: where the
    items start that hold the user's emphasis beside more (kept as written)."""
    marks, commas = _scan(text)
    root = _Group(0, -1, 0)
    root.kept = kept = []
    groups, stack, closed = [root], [root], []
    read = 0  # the commas before commas[read] are read
    for pos, kind in [*marks, (len(text), "")]:  # the end reads the last commas
        g = stack[-1]
        upto = bisect_left(commas, pos, read)
        if upto > read:
            # The commas before this mark are all the current group's: the first ends the item in
            # progress, each one after it an item of text only (a blank one reads as nothing later).
            _end_item(text, g, commas[read], kept)
            g.items.extend(zip([c + 1 for c in commas[read:upto - 1]], commas[read + 1:upto], repeat(None)))
            g.item_start = g.run_start = commas[upto - 1] + 1
            read = upto
        if kind == "B":
            if g is root:
                _end_item(text, g, pos, kept)
                g.items.append(_SEGMENT)
                g.item_start = g.run_start = pos + len(BREAK)
        elif kind == "(":
            _add_run(text, g, pos)
            child = _Group(len(groups), g.index, pos + 1)
            groups.append(child)
            stack.append(child)
        elif kind == ")":
            stack.pop()
            end = pos
            weight = _trailing_weight(text, g.run_start, pos)
            if weight is not None and weight[1] > g.start:  # ComfyUI: `(:3)` is `:3` emphasised, no weight
                g.weight, end = weight
            _end_item(text, g, end, kept)
            closed.append(g)
            parent = stack[-1]
            parent.significant += 1
            parent.only = g if parent.significant == 1 else None
            parent.led = parent.led or parent.significant == 1
            parent.run_start = pos + 1
    _end_item(text, root, len(text), kept)
    live = [True] * len(groups)
    for g in groups[1:]:  # parents come before their children here
        live[g.index] = g.whole and live[g.parent]
    return root, [g for g in closed if live[g.index]]


# --- normalising the items ----------------------------------------------------------------------------


# An item is a plain tuple (ten thousand of them cost little): (text, key, category) for a tag, a sentence
# or other text, and (None, key, category, children, weight) for a group; key is what duplicates are
# found by, the lower-case text or ("group", id).
_Item = tuple


@dataclass
class TagReport:
    """What the tag list said about the prompt's tags, in prompt order, each tag once."""

    known: dict = field(default_factory=dict)  # prompt form -> post count
    aliases: dict = field(default_factory=dict)  # as written -> (canonical prompt form, post count, resolved?)
    unknown: dict = field(default_factory=dict)  # as written -> None (an ordered set)
    source: str = ""
    size: int = 0
    positions: dict = field(default_factory=dict, repr=False)  # where each tag was first seen

    def sort(self) -> None:
        """Prompt order (groups are read before the items around them)."""
        for name in ("known", "aliases", "unknown"):
            entries = getattr(self, name)
            order = sorted(entries, key=self.positions.__getitem__)  # each is there
            setattr(self, name, dict(zip(order, map(entries.__getitem__, order))))

    def lines(self) -> list[str]:
        if not self.source:
            return ["tag list: none (no tags checked)"]
        out = [f"tag list: {self.source}, {self.size:,} tags"]
        out.append(f"known ({len(self.known)}): " + ", ".join(f"{t} [{n:,}]" for t, n in self.known.items()))
        if self.aliases:
            out.append(f"aliases ({len(self.aliases)}): " + ", ".join(
                f"{a} -> {c} [{n:,}]" + ("" if resolved else " (not resolved)") for a, (c, n, resolved) in self.aliases.items()))
        out.append(f"unknown ({len(self.unknown)}): " + (", ".join(self.unknown) or "none"))
        return out


class _Normalizer:
    def __init__(self, text: str, opts: NormalizeOptions, tags, report: TagReport, printable: bool = False,
                 kept: frozenset = frozenset()):
        self.text, self.opts, self.tags, self.report = text, opts, tags, report
        self.kept = kept  # where the items start that _parse found to be the user's syntax
        self.group_ids: dict = {}
        self.sentences = 0  # sentences joined from comma pieces so far
        self.sentence_ends = False  # a piece ends a sentence: a preset's order may bring its start next to it
        self.single_spaced = printable and "  " not in text  # printable: no white space but " "
        if tags is not None:  # the list's own dict look-ups, bound once
            self.tag_info, self.alias_of = tags.get, tags.alias_of

    def leaves(self, spans: list) -> list:
        """The items (or None) that the comma pieces text[start:end] make, in order. A tag written as the
        tag list writes it (`long_hair`) is its entry at once (TagList.as_written). The common tag,
        printable ASCII without `, : @ \\` (so no verbatim text, escape, or `@`/`artist:` prefix),
        takes the same steps as general_leaf with fewer checks, in one loop; kaomoji, `score_` and `by `
        tags, what may be a sentence, and tags the list does not know as they are written (aliases,
        unknown tags, bare artist names for a preset) take general_leaf."""
        starts = list(map(itemgetter(0), spans))
        raws = map(self.text.__getitem__, map(slice, starts, map(itemgetter(1), spans)))
        # white space collapsed (and stripped); where every white space is a single space, strip does it
        texts = map(str.strip, raws) if self.single_spaced else map(" ".join, map(str.split, raws))  # made as used
        items: list = []
        add, general = items.append, self.general_leaf
        lowercase, drop_quality, artist_prefix = self.opts.lowercase, self.opts.drop_quality_tags, self.opts.artist_prefix
        tag_info = self.tag_info if self.tags is not None else None
        as_written = self.tags.as_written if self.tags is not None else None
        known, positions = self.report.known, self.report.positions
        kept = self.kept
        for text, start in zip(texts, starts):
            if kept and start in kept:
                add(general(text, text.lower(), start))
                continue
            if as_written is not None:
                info = as_written(text)
                if info is not None:  # the steps below would give its prompt form and this entry
                    if info.prompt not in known:
                        known[info.prompt] = info.posts
                        positions.setdefault(info.prompt, start)
                    if info.category == 1 and artist_prefix:  # as look_up and listed do
                        tag = artist_prefix + info.prompt
                        sentence = _is_sentence_collapsed(tag) and tag_key(tag) not in self.tags
                        add((tag, tag.lower(), TEXT if sentence else ARTIST))
                    else:
                        add((info.prompt, info.prompt, _LIST_CATEGORIES.get(info.category, GENERAL)))
                    continue
            if not text:
                add(None)
                continue
            lower = text.lower()
            if (not text.isascii() or "," in text or ":" in text or "@" in text or "\\" in text or "BREAK" in text
                    or ("(" in text and ("[" in text or "{" in text or "((" in text))
                    or ("(" in text and (_calls_a_function(text) or (tag_info is not None and _GROUP_BEFORE_TEXT.search(text))))):
                add(general(text, lower, start))
                continue
            if "_" in text:
                if lower in KAOMOJI or lower in PONY_TAGS or lower.startswith("score_") or "__" in text:
                    add(general(text, lower, start))
                    continue
                tag = text.replace("_", " ")
                if "  " in tag or tag[0] == " " or tag[-1] == " ":  # the only white space is a single space
                    tag = " ".join(tag.split())
                    if not tag:  # "_" alone, say
                        add(None)
                        continue
                low = tag.lower()
            elif text[-1] in ".!?" or text.count(" ") >= 4:
                add(general(text, lower, start))
                continue
            else:
                tag, low = text, lower
            if lowercase:
                tag = low
            if low in QUALITY_TAGS or (low[:1] in "[{" and _is_bracketed_quality(low)):
                add(None if drop_quality else (tag, low, QUALITY))
                continue
            if low.startswith("by "):
                add(general(text, lower, start))
                continue
            category = _general_category(low)
            key = low
            if "(" in tag or ")" in tag:
                tag = tag.replace("(", "\\(").replace(")", "\\)")
                key = tag.lower()
            if tag_info is None:
                if "_" in text and (tag[-1] in ".!?" or tag.count(" ") >= 4):
                    category = TEXT  # as in general_leaf: `made_up_tag!`
                add((tag, key, category))
                continue
            info = tag_info(low)  # low has no backslash: it is the list's key
            if info is not None and not (info.category == 1 and artist_prefix):  # known as written
                if info.prompt not in known:
                    known[info.prompt] = info.posts
                    positions.setdefault(info.prompt, start)
                add((tag, key, _LIST_CATEGORIES.get(info.category, category)))
            else:
                add(self.listed(tag, category, start))
        return items

    def listed(self, tag: str, category: str, position: int) -> _Item:
        """The item of a tag (in prompt form) that the list may know: look-up, and a sentence's check."""
        tag, category = self.look_up(tag, category, position)
        if _is_sentence_collapsed(tag) and tag_key(tag) not in self.tags:
            # `made_up_tag!` loses its underscores here and reads as a sentence next time: place it as
            # one now, so that a second run changes nothing
            category = TEXT
        return tag, tag.lower(), category

    def general_leaf(self, text: str, lower: str, start: int) -> _Item | None:
        tags, opts = self.tags, self.opts
        if lower[:1] in "[{" and _is_bracketed_quality(lower):
            return None if opts.drop_quality_tags else (text, lower, QUALITY)
        if start in self.kept or self.kept_as_written(text, lower):
            return text, lower, TEXT
        if _is_sentence_collapsed(text) and not (tags is not None and tag_key(text) in tags):
            return text, lower, TEXT
        tag = _normalize_collapsed(text, opts.lowercase)
        if not tag:  # "_" alone, say
            return None
        low = tag.replace("\\", "").lower() if "\\" in tag else tag.lower()
        if _is_quality_lower(low) or (":" in low and _is_quality_lower(_without_weight(low))):
            if opts.drop_quality_tags:
                return None
            category = QUALITY
        elif (_names_an_artist(low) and not self.names_a_scene(low)) or (low.startswith("by ") and self.lists_an_artist(low[3:])):
            prefix_length = 1 if tag[0] == "@" else 3 if low.startswith("by ") else len("artist:")
            tag, category = self.artist(tag[prefix_length:], tag), ARTIST
        else:
            category = _general_category(low)
            if tags is not None:
                return self.listed(tag, category, start)
        if _is_sentence_collapsed(tag) and not (tags is not None and tag_key(tag) in tags):
            category = TEXT  # as in listed()
        return tag, tag.lower(), category

    def lists_an_artist(self, name: str) -> bool:
        """`a re`, `the only shoe`: the tag list knows the name as an artist's (`by a re` is no place)."""
        if self.tags is None:
            return False
        info = self.tag_info(tag_key(name))
        return info is not None and info.category == 1

    def names_a_scene(self, low: str) -> bool:
        """`by moonlight`, `by night`: `by` and what the tag list knows as a general tag, not an artist."""
        if self.tags is None or not low.startswith("by "):
            return False
        info = self.tag_info(_unescape(low[3:]) if "\\" in low else low[3:])
        return info is not None and info.category == 0

    def kept_as_written(self, text: str, lower: str) -> bool:
        """Items whose text is the user's syntax, not a tag to respell:
        - a comma inside parentheses that do not enclose the whole item, `tag (a, b)`: emphasis the
          user wrote (no Danbooru tag holds a comma), as is a weighted group beside other text,
          `1girl (smile:1.2)`, unless the tag list knows the item (`asai_(00:05)`);
        - with a tag list, a group after a space with more words after it, `girl (pretty) smiling`:
          a Danbooru qualifier ends its tag, unless the list knows the text up to the group
          (`karin (blue archive) smiling`, `evangelion: 3.0 you can (not) redo`);
        - embeddings, LoRA syntax and wildcards (`__animals__`): file names, underscores included;
        - functions of a later prompt node (`STYLE(A1111)`, `TE(l=a_b)`);
        - emphasis inside A1111's `[...]` or NovelAI's `{...}` (`[(dark hair)]`), and doubled parentheses
          after a word (`white ((unbuttoned shirt))`): no Danbooru qualifier is doubled;
        - a BREAK inside a word (`BREAK_a`): without its underscore it would split the prompt next time."""
        if "," in text or "BREAK" in text or _holds_a_file_name(text, lower):
            return True
        if "(" in text and _calls_a_function(text):
            return True
        if "(" in text and ("[" in text or "{" in text or ("((" in text and "))" in text)):
            return True
        if ")" not in text:
            return False
        if not _holds_a_weighted_group(text):
            return self.tags is not None and _emphasis_before_text(text, self.tags)
        return self.tags is None or tag_key(text.replace("_", " ")) not in self.tags

    def artist(self, name: str, as_written: str) -> str:
        name = name.strip()
        if not name:
            return as_written
        prefix = self.opts.artist_prefix
        if prefix == "by " and name.lower().split(" ", 1)[0] in _NOT_NAMES and not self.lists_an_artist(name):
            return as_written  # `@a`, `@the band`: `by a` would read as a place (`by a river`) next time
        return as_written if not prefix else prefix + name

    def look_up(self, tag: str, category: str, position: int) -> tuple[str, str]:
        report, opts = self.report, self.opts
        key = _unescape(tag).lower() if "\\" in tag else tag.lower()
        info = self.tag_info(key)
        if info is None and not key.isascii():
            straight = key.translate(_TYPED_PUNCTUATION)
            if straight != key and (self.tag_info(straight) is not None or self.alias_of(straight) is not None):
                key, tag = straight, tag.translate(_TYPED_PUNCTUATION)
                info = self.tag_info(key)
        if info is None:
            canonical = self.alias_of(key)
            if canonical is not None:
                info = self.tag_info(canonical)
                report.aliases.setdefault(tag, (info.prompt, info.posts, opts.resolve_aliases))
                report.positions.setdefault(tag, position)
                if opts.resolve_aliases:
                    tag = info.prompt.lower() if opts.lowercase else info.prompt
                    category = _general_category(info.prompt.replace("\\", "").lower())  # `2 girls` -> `2girls`: people
            else:
                report.unknown.setdefault(tag, None)
                report.positions.setdefault(tag, position)
                return tag, category
        report.known.setdefault(info.prompt, info.posts)
        report.positions.setdefault(info.prompt, position)
        if info.category == 1 and opts.artist_prefix:  # presets only: a bare artist name gets its prefix
            return self.artist(tag, tag), ARTIST
        return tag, _LIST_CATEGORIES.get(info.category, category)

    def container(self, g: _Group, results: dict, leaves) -> list[list[_Item]]:
        """The group's items in order, in segments between BREAKs (only the root has them), without
        duplicates within a segment (the first one stays): each segment is encoded on its own, so a tag
        repeated in another one (a regional prompt's `1girl`) still counts there. leaves: an iterator
        that gives its text items' leaves in turn."""
        read = [[]]  # (entry, item) per segment, before sentences are joined and duplicates dropped
        for entry in g.items:
            if entry is _SEGMENT:
                read.append([])
                continue
            item = next(leaves) if entry[2] is None else results.get(entry[2].index)
            if item is not None:
                read[-1].append((entry, item))
        segments = []
        for pairs in read:
            items = self.sentences_joined(pairs) if g.parent == -1 else [item for _, item in pairs]
            segments.append(_without_duplicates(items))
        return segments

    def sentences_joined(self, pairs: list) -> list[_Item]:
        """The items with each sentence that commas cut into pieces made one text item again, as written:
        `A girl with silver hair, red eyes, and a black dress stands on a bridge.` A sentence runs from
        a piece that starts one (a sentence by itself, or plain words starting with a capital that are
        not a known tag) to the first piece that ends like a sentence; every piece between is plain
        words (no underscore, bracket, escape, colon, `@` or `<`) read as a general tag or text. Read
        once, left to right: a run that fails fails at a piece no later start can pass."""
        pieces = [self.plain_words(entry, item) for entry, item in pairs]
        if not any(self.ends_sentence(piece, item) for piece, (_, item) in zip(pieces, pairs)):
            return [item for _, item in pairs]  # no piece ends a sentence (tags only, most prompts)
        self.sentence_ends = True
        out: list[_Item] = []
        i, n = 0, len(pairs)
        while i < n:
            if not self.starts_sentence(pieces[i], pairs[i][1]) or self.ends_sentence(pieces[i], pairs[i][1]):
                out.append(pairs[i][1])
                i += 1
                continue
            j = i + 1
            while j < n and pieces[j] is not None and not self.ends_sentence(pieces[j], pairs[j][1]):
                j += 1
            if j < n and pieces[j] is not None:  # pieces i..j make one sentence
                # a key of its own: never dropped as a duplicate (a tag placed before it on a first run
                # may join it on the next, and the sentence must not then fall to an equal one)
                self.sentences += 1
                out.append((", ".join(pieces[i:j + 1]), ("sentence", self.sentences), TEXT))
            else:
                out.extend(item for _, item in pairs[i:j])
            i = j + 1 if j < n and pieces[j] is not None else j
        return out

    def plain_words(self, entry, item) -> str | None:
        """The piece as written (white space collapsed) if it may be part of a sentence, else None."""
        if entry[2] is not None or item[2] not in (GENERAL, TEXT):
            return None
        text = " ".join(self.text[entry[0]:entry[1]].split())
        if not text or any(mark in text for mark in _NOT_IN_SENTENCE_PIECES):
            return None
        return text

    def ends_sentence(self, piece: str | None, item: _Item) -> bool:
        """A piece that ends a sentence: read as text (a tag list's `k-on!` is a tag) and ending in . ! ?,
        or, not a tag the list knows (`little busters! school uniform`), with a sentence's end inside:
        . ! ? after a word of three letters or more (not `dr. slump`), a space, then a capital or a digit
        (`holding an umbrella. 1girl`, `at the viewer. She`; not `love live! school idol project`)."""
        if piece is None:
            return False
        if item[2] == TEXT and piece[-1] in ".!?":
            return True
        if self.tags is not None and piece.lower() in self.tags:
            return False
        return any(m.group(1).isupper() or m.group(1).isdigit() for m in _SENTENCE_END_INSIDE.finditer(piece))

    def starts_sentence(self, piece: str | None, item: _Item) -> bool:
        if piece is None:
            return False
        if item[2] == TEXT:
            return True
        return piece[0].isupper() and " " in piece and not (self.tags is not None and piece.lower() in self.tags)

    def group(self, g: _Group, results: dict, leaves) -> _Item | None:
        children = self.container(g, results, leaves)[0]
        if not children:
            return None
        key = self.group_ids.setdefault((tuple([c[1] for c in children]), g.weight), len(self.group_ids))
        categories = {c[2] for c in children}
        return None, ("group", key), categories.pop() if len(categories) == 1 else GENERAL, children, g.weight


# What a piece of a sentence cut by commas never holds: tag syntax (underscores, qualifier or weight
# brackets, escapes, `a:b` weights and prefixes, `@artist`, `<lora:...>`).
_NOT_IN_SENTENCE_PIECES = ("_", "(", ")", "[", "]", "{", "}", "\\", ":", "@", "<", ">")


# A sentence's end inside a piece, where the next sentence or the tags go on without a comma, and the
# character after it (_Normalizer.ends_sentence reads it). A fixed-width look-behind: linear on any text.
_SENTENCE_END_INSIDE = re.compile(r"(?<=[^\W\d_]{3})[.!?] (\w)")


def _render(item: _Item, weights_read_late: list | None = None) -> str:
    """An item's text (a group's nesting may be deep: an explicit stack, no recursion). A weight read
    at a group's tidied end appends its tag to weights_read_late."""
    out: list = []
    stack: list = [(item, False)]  # (item, the only child of a group)
    while stack:
        top, wrapped = stack.pop()
        if isinstance(top, str):
            out.append(top)
        elif top[0] is not None:
            out.append(top[0])
        else:
            children, weight = top[3], top[4]
            if not (weight or wrapped) and len(children) == 1 and children[0][0] is not None and _is_emoticon(f"({children[0][0]})"):
                # `(:a, )` tidied to `(:a)` would read as a face next time, its parentheses as text:
                # the weight ComfyUI gives the group, written out, keeps it a group
                weight = ":1.1"
            out.append("(")
            parts: list = [(weight + ")", False)]
            last = children[-1][0] if children else None
            tail = _trailing_weight(last, 0, len(last)) if not weight and last is not None and ":" in last else None
            if tail is not None and not last[:tail[1]].strip() and len(children) > 1:
                # `(masterpiece, best quality, :1.2,)`: tidied, `, :1.2)` weighs the group next time
                children, weight = children[:-1], tail[0]
                parts[0] = (weight + ")", False)
                last = children[-1][0]
            elif tail is not None and last[:tail[1]].strip("( "):
                # `(long hair: 1.2,)`: tidied to `(long hair: 1.2)`, its weight is read next time: read it now
                last = last[:tail[1]].rstrip()
                if weights_read_late is not None:
                    weights_read_late.append(last)
                children, weight = [*children[:-1], (last, *children[-1][1:])], tail[0]
                if any(child[1] == last.lower() for child in children[:-1]):  # `(a, a:1_)`: `(a, a:1)` next time
                    children = children[:-1]  # loses its duplicate: lose it now
                    last = children[-1][0]
                parts[0] = (weight + ")", False)
            piece = _after_last_break(last) if last is not None else None  # where a face would start
            if not weight and last is not None and last[-1:] == "\\":
                parts.append((" ", False))  # `(a, b\_)`: ComfyUI reads a backslash before the `)` as its escape
            elif (piece is not None and (len(children) > 1 or len(piece) < len(last))
                  and _is_emoticon(f"{piece.strip()}{weight})")):
                # `(a, :, )`, `(a BREAK :, )`: tidied to `(a, :)`, it would end in a face next time
                parts.append((", ", False))
            for n, child in enumerate(reversed(children)):
                if n:
                    parts.append((", ", False))
                parts.append((child, len(children) == 1))
            if len(children) > 1 and children[0][0] is not None and _is_emoticon(f"({children[0][0]}"):
                parts.append((", ", False))  # `(, :, a)` likewise: `(:, a)` opens with a face
            stack.extend(parts)
    return "".join(out)


# The style tags RouWei's card lists ("General styles", "Booru tags styles"; and every `(style)` tag):
# with the artists they go to the style chunk, which the card asks for ("YOU MUST ADD BREAK after
# artists/style tags").
STYLE_TAGS = frozenset({
    "2.5d", "anime screencap", "bold line", "sketch", "cgi", "digital painting", "flat colors", "smooth shading",
    "minimalistic", "ink style", "oil style", "pastel style", "animification", "art nouveau", "nihonga", "shikishi",
    "minimalism", "fine art parody",
})


def is_style_tag(item: _Item) -> bool:
    """A tag that names an art style (see STYLE_TAGS); a weighted group of them is one too (nesting may
    be deep: an explicit stack, no recursion)."""
    stack = [item]
    while stack:
        top = stack.pop()
        if top[2] not in (GENERAL, TEXT):
            return False
        if isinstance(top[1], str):
            key = tag_key(top[1])
            if not (key in STYLE_TAGS or key.endswith(" (style)")):
                return False
            continue
        children = top[3] if len(top) > 3 else None
        if not children:
            return False
        stack.extend(children)
    return True


def _without_duplicates(items: list[_Item]) -> list[_Item]:
    """The first of each key, in order (segments merged into one)."""
    seen: set = set()
    return [i for i in items if not (i[1] in seen or seen.add(i[1]))]


def _arrange(segments: list[list[_Item]], opts: NormalizeOptions) -> list[list[_Item]]:
    """Presets: BREAKs removed, tag order within each segment, the style chunk. Where segments are
    merged, their duplicates are dropped as within one."""
    if opts.remove_break:
        segments = [_without_duplicates([i for seg in segments for i in seg])]
    category = itemgetter(2)
    if opts.tag_order:
        rank = {c: n for n, c in enumerate(opts.tag_order)}
        last = len(rank)
        ranks = [list(map(rank.get, map(category, seg), repeat(last))) for seg in segments]
        # a stable sort by rank (the items' own order among equals), with C-level look-ups
        segments = [list(map(seg.__getitem__, sorted(range(len(seg)), key=r.__getitem__))) for seg, r in zip(segments, ranks)]
    style: list[_Item] = []
    if opts.style_chunk or opts.artists_to_own_chunk:
        categories = frozenset((QUALITY, META) if opts.style_chunk == "last" else (QUALITY,) if opts.style_chunk else ())

        def place(item: _Item) -> int | None:
            """Where the item goes in the style chunk (artists, styles, then quality: the RouWei card's
            order), or None where it stays."""
            if item[2] == ARTIST:
                return 0
            if opts.style_chunk and is_style_tag(item):
                return 1
            return 2 if item[2] in categories else None

        placed = [[(place(i), i) for i in seg] for seg in segments]
        if any(p is not None and p < 2 for seg in placed for p, _ in seg):  # an artist or a style tag
            moved = sorted(((p, i) for seg in placed for p, i in seg if p is not None), key=itemgetter(0))
            style = _without_duplicates([i for _, i in moved])
            segments = [[i for p, i in seg if p is None] for seg in placed]
    segments = [seg for seg in segments if seg]
    if style:
        segments = [style, *segments] if opts.style_chunk == "first" else [*segments, style]
    if opts.remove_break and len(segments) > 1:  # a style chunk, were one asked for too
        segments = [_without_duplicates([i for seg in segments for i in seg])]
    return segments


def normalize_with_report(prompt: str, options: NormalizeOptions = NormalizeOptions(), tags=None) -> tuple[str, TagReport]:
    """The normalised prompt, and what the tag list (a tags.TagList, or None) says about its tags."""
    # Nothing here makes reference cycles, so reference counting frees it all; a cyclic collection
    # triggered by our many small objects would walk every object in the process (the tag list's
    # included) again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        reads_and = not isinstance(prompt, str) or AND in prompt
        subprompts = _and_subprompts(_typed_and_wide_as_ascii(_clean(prompt)[0])) if reads_and else [prompt]
        if len(subprompts) == 1:
            return _normalize_subprompt(prompt, options, tags)
        # AND sub-prompts (composable diffusion, Latent Couple, comfyui-prompt-control) are encoded
        # apart: each is a prompt of its own, with its own duplicates, BREAKs and preset order.
        results = [_normalize_subprompt(text, options, tags) for text in subprompts]
        report = results[0][1]
        for _, more in results[1:]:
            for name in ("known", "aliases", "unknown"):
                entries = getattr(report, name)
                for key, value in getattr(more, name).items():
                    entries.setdefault(key, value)
        # a sub-prompt left empty (`masterpiece AND 1girl` with quality tags dropped) goes with its AND:
        # a dangling AND would reach CLIP as a word, or a prompt node as an empty region
        return f" {AND} ".join(text for text, _ in results if text.strip()).strip(), report
    finally:
        if collecting:
            gc.enable()


def _normalize_subprompt(prompt: str, options: NormalizeOptions, tags) -> tuple[str, TagReport]:
    text, report, sentence_ends, weights_read_late = _normalize_with_report(prompt, options, tags)
    # A preset's order can bring a sentence's start next to its end by moving a tag from between
    # them (`Night city, 1girl, rain falls. Neon lights`): run again on the output until nothing
    # more joins, so that normalising the result changes nothing. Each pass that changes the text
    # joined pieces (an order of the same items is kept), so few passes are ever needed.
    # Likewise where the output has full-width syntax that the first pass did not read (its tidying can
    # close `（a，）` into a group): each pass turns some into ASCII and none back; where the preset
    # moved items past a bracket left unpaired, which they may pair anew; and where a weight was read
    # at a group's tidied end (`(longhair: 0.9,)`): the tag it leaves is looked up, resolved and placed
    # on the next pass.
    # A pass that changed the text is checked by one more: a pairing it made anew (`},:,@{` under anima
    # gives `@{, }, :`, every bracket paired) may order its items anew.
    first_report = report
    if (weights_read_late or (sentence_ends and options.tag_order) or _has_typed_syntax(text)
            or _may_regroup(text, options) or _may_regroup(prompt, options)):
        for _ in range(MAX_ORDER_PASSES):
            again, report, _, _ = _normalize_with_report(text, options, tags)
            if again == text:
                break
            text = again
    if report is first_report or not weights_read_late:
        return text, first_report  # the tags as the user wrote them (a later pass may read some as prose)
    # `long hair: 1.2` was looked up before its weight was read: the tags of the output, in its order,
    # and what else the first pass found (aliases it resolved; tags a later pass reads as prose)
    last_unknown = set(report.unknown)
    for name in ("known", "aliases", "unknown"):
        entries = getattr(report, name)
        for key, value in getattr(first_report, name).items():
            entries.setdefault(key, value)
    report.unknown = {tag: None for tag in report.unknown
                      if tag in last_unknown or not (":" in tag and _trailing_weight(tag, 0, len(tag)))}
    return text, report


MAX_ORDER_PASSES = 8


_UNESCAPED_BRACKET = re.compile(r"(?<!\\)[\[\]{}()]")
_OPENING = {"]": "[", "}": "{", ")": "("}


def _may_regroup(text: str, options: NormalizeOptions) -> bool:
    """Whether moving items may have changed how the output's brackets pair: items moved and a bracket
    is left unpaired (`)[1girl` moved before `]: BREAK [` pairs anew next time)."""
    moves = options.tag_order or options.remove_break or options.style_chunk or options.artists_to_own_chunk
    if not moves:
        return False
    depth = {"[": 0, "{": 0, "(": 0}
    for bracket in _UNESCAPED_BRACKET.findall(text):
        if bracket in depth:
            depth[bracket] += 1
        else:
            opening = _OPENING[bracket]
            if not depth[opening]:
                return True
            depth[opening] -= 1
    return any(depth.values())


def _typed_and_wide_as_ascii(text: str) -> str:
    """Wide commas and full-width weight syntax read as ASCII: what the AND split and the parser see
    (`AND（a：1.2）` splits as `AND(a:1.2)` will)."""
    if _WIDE_COMMA.search(text):  # first: a line break decides by the commas before it
        text = _wide_commas_as_commas(text)
    if not text.isascii() and _FULL_WIDTH_SYNTAX.search(text):
        text = _typed_syntax_as_ascii(text)
    return text


def _normalize_with_report(prompt: str, options: NormalizeOptions, tags) -> tuple[str, TagReport, bool]:
    text, printable = _clean(prompt)
    text = _typed_and_wide_as_ascii(text)
    if not printable:
        text = _line_breaks_as_commas(text)
    report = TagReport(source=tags.source, size=len(tags)) if tags is not None else TagReport()
    root, live = _parse(text)
    worker = _Normalizer(text, options, tags, report, printable, frozenset(root.kept))
    # The groups (innermost first), then the root: all the text items in one bulk, in that order
    leaves = iter(worker.leaves([entry for g in [*live, root] for entry in g.items if entry is not _SEGMENT and entry[2] is None]))
    results: dict = {}
    for g in live:
        results[g.index] = worker.group(g, results, leaves)
    segments = worker.container(root, results, leaves)
    report.sort()
    weights_read_late: list = []
    text = f" {BREAK} ".join(_joined([item[0] if item[0] is not None else _render(item, weights_read_late)
                                      for item in segment]) for segment in _arrange(segments, options))
    return text, report, worker.sentence_ends, bool(weights_read_late)


def _joined(texts: list[str]) -> str:
    """A segment's items joined by commas. An item that ends in a lone backslash (`a\\`, written before
    a space or a BREAK) and now has a comma after it gets the backslash doubled: a lone one would
    escape that comma and join two items on the next run."""
    return ", ".join([*(t + "\\" if t[-1:] == "\\" and (len(t) - len(t.rstrip("\\"))) % 2 else t for t in texts[:-1]),
                      *texts[-1:]])


def normalize(prompt: str, options: NormalizeOptions = NormalizeOptions(), tags=None) -> str:
    return normalize_with_report(prompt, options, tags)[0]


def tag_keys(prompt: str) -> set[str]:
    """Every tag, sentence and group member of a normalised prompt, lower-cased (for checks)."""
    text = clean_text(prompt)
    root, live = _parse(text)
    keys = set()
    for g in [*live, root]:
        for entry in g.items:
            if entry is not _SEGMENT and entry[2] is None:
                raw = text[entry[0]:entry[1]].strip()
                if raw:
                    keys.add(raw.lower())
    return keys
