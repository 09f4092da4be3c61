"""Booru-tag prompt normaliser (plain Python).

What it does to a prompt, and why:
- Danbooru writes tags with underscores (`long_hair`); the text encoders were trained on spaces.
  Underscores become spaces, except in the tags where they are the tag: the kaomoji list used by
  tagcomplete, wd14-tagger and imgutils (`^_^`, `>_<`, `o_o`...) and Pony/Anima `score_N` tags.
- `name_(qualifier)` tags (`karin_(blue_archive)`, `oil painting (medium)`) carry parentheses that
  ComfyUI's weight parser would read as emphasis; they are escaped (`karin \\(blue archive\\)`), as
  are emoticons such as `>:(`. Weight syntax the user wrote, `(tag:1.2)` and `(tag)`, is kept, and
  what is already escaped is not escaped again.
- Commas and white space are tidied, duplicate tags dropped (the first is kept), BREAK kept as the
  chunk separator (upper-case, outside brackets, as A1111 reads it), natural-language sentences and
  `@artist` / `by artist` tags kept as written.
- Options: drop quality tags, gather artist tags into their own BREAK segment at the end, lower-case.

normalize() is idempotent and never loses a tag it was not asked to drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .chunking import check_prompt

# Kaomoji whose underscores are part of the tag (toriato/stable-diffusion-webui-wd14-tagger #7 list,
# used verbatim by tagcomplete and imgutils), plus t_t and o_x from the current Danbooru tag list.
KAOMOJI = frozenset({
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@",
    "^_^", "o_o", "u_u", "x_x", "|_|", "||_||", "t_t", "o_x",
})
SCORE_TAG = re.compile(r"score_\d+(_up)?", re.IGNORECASE)

# Tags that rate the image rather than describe it. Nekofantasia's card: none were ever trained.
QUALITY_TAGS = frozenset({
    "masterpiece", "best quality", "high quality", "great quality", "amazing quality", "good quality",
    "normal quality", "medium quality", "low quality", "bad quality", "worst quality", "very aesthetic",
    "aesthetic", "displeasing", "very displeasing", "good score", "bad score", "worse score", "worst score",
    "best detail", "worst detail",
})

BREAK = "BREAK"
_UNESCAPED_PAREN = re.compile(r"(?<!\\)([()])")
# Linear: "\d+\.?\d*" split a digit run between its two quantifiers in n ways and made the search
# quadratic ("(a:" + "1" * 40000 + "x)" took 36 s); "\d+(?:\.\d*)?" has one way to match it.
_WEIGHT = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$")
_SENTENCE_END = re.compile(r"[.!?]$")
_ARTIST_PREFIXES = ("@", "by ", "artist:")


@dataclass(frozen=True)
class NormalizeOptions:
    drop_quality_tags: bool = False
    artists_to_own_chunk: bool = False
    lowercase: bool = False


# --- scanning -------------------------------------------------------------------------------------


def _split_commas(text: str) -> list[str]:
    """Split at commas, honouring backslash escapes (no bracket awareness: see _group_pieces)."""
    pieces, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == ",":
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    pieces.append("".join(cur))
    return pieces


def _is_emoticon(piece: str) -> bool:
    """`>:(`, `:)`, `\\(^o^)/`, `(o)_(o)`: short, no spaces, parentheses, at most two alphanumerics.
    Their parentheses are literal, never weight syntax."""
    p = piece.strip()
    if _unescape(p).lower() in KAOMOJI:
        return True
    return 0 < len(p) <= 10 and " " not in p and ("(" in p or ")" in p) and sum(c.isalnum() for c in p) <= 2


def _paren_delta(piece: str) -> int:
    """Unescaped '(' minus ')' in a piece; emoticons count as balanced (their parentheses are text)."""
    if _is_emoticon(piece):
        return 0
    parens = _UNESCAPED_PAREN.findall(piece)
    return parens.count("(") - parens.count(")")


def _group_pieces(text: str) -> list[str]:
    """Comma-separated items, keeping `(a, b:1.2)` groups whole. A group that never closes is not
    weight syntax (ComfyUI reads unmatched parentheses as text), so its pieces stay separate."""
    items, pending, depth = [], [], 0
    for piece in _split_commas(text):
        if pending:
            pending.append(piece)
            depth += _paren_delta(piece)
            if depth <= 0:
                items.append(",".join(pending))
                pending = []
        elif _paren_delta(piece) > 0:
            pending, depth = [piece], _paren_delta(piece)
        else:
            items.append(piece)
    items.extend(pending)  # never closed: separate items, their parentheses literal
    return items


def _enclosing_group(item: str) -> tuple[str, str] | None:
    """If the whole item is one (...) group, return (content, weight suffix as written)."""
    if not (item.startswith("(") and item.endswith(")") and not item.endswith("\\)")):
        return None
    depth = 0
    i = 0
    while i < len(item):
        ch = item[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(item) - 1:
                return None  # "(a) (b)": two groups, not one
        i += 1
    if depth != 0:
        return None
    inner = item[1:-1]
    weight = _WEIGHT.search(inner)
    if weight and "(" not in inner[weight.start():]:
        return inner[: weight.start()], ":" + weight.group(1)
    return inner, ""


# --- item kinds -----------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    return text.replace("\\(", "(").replace("\\)", ")")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def is_sentence(text: str) -> bool:
    """Natural language (Anima, RouWei 0.8 take it): ends like a sentence, or five words or more."""
    t = _collapse(text)
    return bool(_SENTENCE_END.search(t)) or (len(t.split(" ")) >= 5 and "_" not in t)


def is_artist(tag: str) -> bool:
    return tag.lower().startswith(_ARTIST_PREFIXES)


def is_quality(tag: str) -> bool:
    key = tag.lower()
    return key in QUALITY_TAGS or bool(SCORE_TAG.fullmatch(key))


def normalize_tag(tag: str, lowercase: bool = False) -> str:
    tag = _collapse(tag)
    keep_underscores = _unescape(tag).lower() in KAOMOJI or SCORE_TAG.fullmatch(tag) is not None
    if not keep_underscores:
        tag = _collapse(tag.replace("_", " "))
    tag = _UNESCAPED_PAREN.sub(r"\\\1", tag)
    return tag.lower() if lowercase else tag


@dataclass
class _Item:
    text: str
    key: str
    artist: bool = False


def _normalize_items(raw_items: list[str], opts: NormalizeOptions) -> list[_Item]:
    out, seen = [], set()
    for raw in raw_items:
        item = _normalize_item(raw.strip(), opts)
        if item is None or item.key in seen:
            continue
        seen.add(item.key)
        out.append(item)
    return out


def _normalize_item(raw: str, opts: NormalizeOptions) -> _Item | None:
    if not raw:
        return None
    group = _enclosing_group(raw)
    if group is not None:
        content, weight = group
        inner = _normalize_items(_group_pieces(content), opts)
        if not inner:
            return None
        text = "(" + ", ".join(i.text for i in inner) + weight + ")"
        return _Item(text, text.lower(), artist=all(i.artist for i in inner))
    if is_sentence(raw) or "," in raw:
        # A comma survives grouping only inside matched parentheses that do not enclose the whole
        # item, e.g. "tag (a, b)": emphasis the user wrote (no Danbooru qualifier holds a comma).
        text = _collapse(raw)
        return _Item(text, text.lower())
    tag = normalize_tag(raw, opts.lowercase)
    if not tag:  # "_" alone, say
        return None
    if opts.drop_quality_tags and is_quality(tag.replace("\\", "")):
        return None
    return _Item(tag, tag.lower(), artist=is_artist(tag))


# --- the prompt -------------------------------------------------------------------------------------


def _matched_paren_depths(item: str) -> list[int]:
    """Bracket depth at each character, counting only parentheses that are matched (and not part of
    an emoticon); unmatched ones are text, as in ComfyUI's parser and in our escaping."""
    depth_change = [0] * (len(item) + 1)
    if not _is_emoticon(item):
        stack, i = [], 0
        while i < len(item):
            if item[i] == "\\":
                i += 2
                continue
            if item[i] == "(":
                stack.append(i)
            elif item[i] == ")" and stack:
                depth_change[stack.pop()] += 1
                depth_change[i + 1] -= 1
            i += 1
    depths, depth = [], 0
    for change in depth_change[:-1]:
        depth += change
        depths.append(depth)
    return depths


def _split_on_break(item: str) -> list[str]:
    """Split one comma item at BREAKs standing outside brackets, upper-case and whole (A1111's rule)."""
    depths = _matched_paren_depths(item)
    parts, start, i = [], 0, 0
    while i < len(item):
        end = i + len(BREAK)
        if (depths[i] == 0 and item.startswith(BREAK, i) and (i == 0 or item[i - 1].isspace())
                and (end == len(item) or item[end].isspace())):
            parts.append(item[start:i])
            start = i = end
            continue
        i += 1
    parts.append(item[start:])
    return parts


def split_break(text: str) -> list[list[str]]:
    """The prompt's comma items, in segments between BREAKs."""
    segments: list[list[str]] = [[]]
    for item in _group_pieces(text):
        for n, part in enumerate(_split_on_break(item)):
            if n:
                segments.append([])
            segments[-1].append(part)
    return segments


def normalize(prompt: str, options: NormalizeOptions = NormalizeOptions()) -> str:
    check_prompt(prompt)  # size and nesting limits: bounds the work below (and its recursion depth)
    segments = [_normalize_items(seg, options) for seg in split_break(prompt)]
    seen: set[str] = set()
    kept, artists = [], []
    for segment in segments:
        items = []
        for item in segment:
            if item.key in seen:  # duplicates across segments too: the first one stays
                continue
            seen.add(item.key)
            (artists if options.artists_to_own_chunk and item.artist else items).append(item)
        if items:
            kept.append(items)
    if artists:
        kept.append(artists)
    return f" {BREAK} ".join(", ".join(i.text for i in seg) for seg in kept)


def tag_keys(prompt: str) -> set[str]:
    """Every tag, sentence and group member of a normalised prompt, lower-cased (for checks)."""
    keys = set()

    def walk(raw_items):
        for raw in raw_items:
            raw = raw.strip()
            group = _enclosing_group(raw)
            if group is not None:
                walk(_group_pieces(group[0]))
            elif raw:
                keys.add(raw.lower())

    for segment in split_break(prompt):
        walk(segment)
    return keys
