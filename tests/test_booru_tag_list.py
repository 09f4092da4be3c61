"""The normaliser against the real Danbooru tag list (tagcomplete's danbooru.csv, bundled), aliases, the
tag report, the per-model presets, and hostile input."""

import csv
import gzip
import logging
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowanime.prompt import booru
from flowanime.prompt.booru import (
    FACE_TAGS,
    KAOMOJI,
    PRESET_NAMES,
    QUALITY_TAGS,
    NormalizeOptions,
    normalize,
    normalize_with_report,
    preset_options,
    split_break,
)
from flowanime.prompt.tags import BUNDLED, load_tag_list, read_tag_csv

# tagcomplete's underscore exclusion list (wd14-tagger issue #7), plus t_t and o_x from the list itself
TAGCOMPLETE_KAOMOJI = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                       ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||", "t_t", "o_x"}

# Tags whose raw spelling does not come out in prompt form, and why.
EXCEPTIONS = {
    # Its backslash is part of the name, and `\(` reads as an already escaped parenthesis (which
    # normalize must leave alone to stay idempotent), so the literal backslash is lost to ComfyUI.
    "\\(^o^)/",
}


@pytest.fixture(scope="module")
def rows():
    with gzip.open(BUNDLED, "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def tags():
    return load_tag_list()


def prompt_form(name: str) -> str:
    """What tagcomplete inserts into a prompt (javascript/tagAutocomplete.js): underscores to spaces unless
    the tag is on the exclusion list; parentheses escaped for the weight parser."""
    text = name if name in TAGCOMPLETE_KAOMOJI else name.replace("_", " ")
    return text.replace("(", "\\(").replace(")", "\\)")


def test_every_tag_written_raw_comes_out_in_prompt_form(rows):
    wrong = {r[0]: normalize(r[0]) for r in rows if normalize(r[0]) != prompt_form(r[0])}
    share = 1 - len(wrong) / len(rows)
    print(f"{len(rows) - len(wrong):,} of {len(rows):,} tags in exact prompt form ({share:.4%})")
    assert set(wrong) == EXCEPTIONS, {k: v for k, v in wrong.items() if k not in EXCEPTIONS}


def test_tags_ending_in_punctuation_are_tags(rows):
    # issue 11: 76 of the 20,000 most used tags; they were taken for sentences and kept their underscores
    ending = [r[0] for r in rows[:20000] if r[0][-1] in ".!?" and "_" in r[0]]
    assert len(ending) >= 70
    assert [normalize(t) for t in ending] == [prompt_form(t) for t in ending]
    assert normalize("love_live!, bang_dream!, bocchi_the_rock!, gochuumon_wa_usagi_desu_ka?, super_smash_bros.") == \
        "love live!, bang dream!, bocchi the rock!, gochuumon wa usagi desu ka?, super smash bros."


def test_kaomoji_tags_keep_their_underscores(rows):
    kaomoji = [r[0] for r in rows if r[0] in TAGCOMPLETE_KAOMOJI]
    assert len(kaomoji) >= 15
    for tag in kaomoji:
        assert normalize(tag).replace("\\", "") == tag


def test_face_tags_are_the_lists_short_faces_and_emphasis_on_them_is_kept(rows):
    """FACE_TAGS is a fact of the bundled list (its rule, applied to the list, gives exactly it), and
    parentheses around each are emphasis: `(:d)` keeps its weight, where an escape would hand CLIP the
    literal text `(:d)`."""
    def short_face(name):
        alnum = sum(c.isalnum() for c in name)
        return (1 <= alnum <= 2 and len(name) <= 4 and not name.isalnum()
                and not any(c in name for c in "()[]{}_ .\\"))

    assert {r[0] for r in rows if r[1] == "0" and short_face(r[0])} == FACE_TAGS
    for face in sorted(FACE_TAGS):
        for written in (f"({face})", f"(({face}))", f"1girl, ({face}), smile"):
            assert normalize(written) == written, written


def test_idempotent_over_the_whole_list(rows):
    names = [r[0] for r in rows]
    for name in names:
        once = normalize(name)
        assert normalize(once) == once, name
    for start in range(0, len(names), 5000):  # and as long prompts
        once = normalize(", ".join(names[start:start + 5000]))
        assert normalize(once) == once


def test_the_list_knows_every_tag_in_prompt_form(rows, tags):
    assert len(tags) == len({r[0] for r in rows}) == 140782
    for name, category, posts, _ in rows[:3000]:
        info = tags.get(normalize(name).replace("\\", "").lower())
        assert info is not None and (info.category, info.posts) == (int(category), int(posts))


def test_alias_resolution_on_real_aliases(rows, tags):
    canonical = {r[0] for r in rows}
    owners = {}
    for r in rows:
        for alias in filter(None, r[3].split(",")):
            owners.setdefault(alias, set()).add(r[0])
    # aliases that stand for one tag and are no tag themselves (nor one in prompt form)
    plain = sorted(a for a, o in owners.items() if len(o) == 1 and not a.startswith("/") and a not in canonical
                   and prompt_form(a).replace("\\", "").lower() not in {prompt_form(c).replace("\\", "").lower() for c in o})
    sample = random.Random(11).sample(plain, 500)
    resolve = NormalizeOptions(resolve_aliases=True)
    misses = [(a, normalize(a, resolve, tags)) for a in sample
              if normalize(a, resolve, tags) != prompt_form(next(iter(owners[a])))
              and normalize(a, resolve, tags) == normalize(a)]
    # an alias whose prompt form is also the prompt form of some canonical tag stays that tag
    assert len(misses) <= 5, misses
    assert normalize("blueeyes, mouth open, 1girls", resolve, tags) == "blue eyes, open mouth, 1girl"
    assert normalize("blueeyes, blue_eyes", resolve, tags) == "blue eyes"  # duplicates after resolution
    assert normalize("blueeyes", NormalizeOptions(), tags) == "blueeyes"  # only when asked


def test_report_names_unknown_tags_and_never_drops_them(tags):
    prompt = ("blueeyes, long_hair, not_a_real_tag_xyz, (another_fake_tag:1.2), @wlop, by kantoku, "
              "A girl stands in the rain., embedding:my_emb, masterpiece, love_live!")
    out, report = normalize_with_report(prompt, NormalizeOptions(resolve_aliases=True), tags)
    assert out == ("blue eyes, long hair, not a real tag xyz, (another fake tag:1.2), @wlop, by kantoku, "
                   "A girl stands in the rain., embedding:my_emb, masterpiece, love live!")
    assert list(report.unknown) == ["not a real tag xyz", "another fake tag"]
    assert report.known == {"blue eyes": 1762765, "long hair": 4350743, "love live!": 88667}
    assert report.aliases == {"blueeyes": ("blue eyes", 1762765, True)}
    lines = report.lines()
    assert "unknown (2): not a real tag xyz, another fake tag" in lines
    assert "aliases (1): blueeyes -> blue eyes [1,762,765]" in lines


def test_a_users_own_csv(tmp_path):
    text = 'long_hair,0,100,"longhair,lh"\nmy_oc,4,3,""\nnot,a,row\n'
    (tmp_path / "mine.csv").write_text(text, encoding="utf-8")
    (tmp_path / "mine.csv.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("mine.csv", "mine.csv.gz"):
        tags = read_tag_csv(tmp_path / name)
        assert len(tags) == 2 and tags.alias_of("longhair") == "long hair"
        out, report = normalize_with_report("longhair, my_oc, other", NormalizeOptions(resolve_aliases=True), tags)
        assert out == "long hair, my oc, other" and list(report.unknown) == ["other"]
    (tmp_path / "empty.csv").write_text("a,b,c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'tag_list_csv'"):
        read_tag_csv(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="'tag_list_csv'"):
        read_tag_csv(tmp_path / "missing.csv")


def test_a_csv_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Excel's "CSV UTF-8" and Notepad write a BOM before the first row; it is not part of the tag.
    Notepad's "UTF-16" has its own BOM, which says how to read the rest."""
    text = '1girl,0,100,"1girls,onegirl"\nsolo,0,50,""\n'
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "excel.csv.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + text.encode()))
    (tmp_path / "notepad-utf16.csv").write_bytes(text.encode("utf-16"))  # Notepad's "UTF-16" / "Unicode"
    (tmp_path / "utf16-be.csv").write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    for name in ("excel.csv", "excel.csv.gz", "notepad-utf16.csv", "utf16-be.csv"):
        tags = read_tag_csv(tmp_path / name)
        assert tags.alias_of("1girls") == "1girl"
        out, report = normalize_with_report("1girls, 1girl, solo", NormalizeOptions(resolve_aliases=True), tags)
        assert out == "1girl, solo" and not report.unknown


def test_a_csv_in_a_windows_code_page_is_read_with_a_warning(tmp_path, caplog):
    """Excel's plain "CSV" writes the Windows code page: the rows still load, and the log says how to save it."""
    (tmp_path / "cp1252.csv").write_bytes('pok\u00e9mon,3,10,""\nsolo,0,50,""\n'.encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="FlowAnime"):
        tags = read_tag_csv(tmp_path / "cp1252.csv")
    assert len(tags) == 2 and "solo" in tags
    assert any("not UTF-8" in r.getMessage() and "CSV UTF-8" in r.getMessage() for r in caplog.records)


# --- presets: one row per model card (/work/shared/seeds) ----------------------------------------------

PRESET_TABLE = [
    # Nekofantasia 0.1: "does not use artificial quality tags"; "Don't use underscores"; absurdres and
    # highres recommended (real Danbooru meta tags, kept)
    ("nekofantasia", "masterpiece, best_quality, 1girl, kaenbyou_rin, oil_painting_(medium), cat_ears, absurdres, "
                     "highres, score_9",
     "1girl, kaenbyou rin, oil painting \\(medium\\), cat ears, absurdres, highres"),
    # RouWei 0.8: `by ` is mandatory for artists, which MUST be in a separate CLIP chunk; the card's example
    # "by kantoku, by wlop, best quality, masterpiece BREAK 1girl, ..."
    ("rouwei", "1girl, karin_(blue_archive), best quality, @kantoku, wlop, masterpiece, smile",
     "by kantoku, by wlop, best quality, masterpiece BREAK 1girl, karin \\(blue archive\\), smile"),
    # nai-v2-fm: "1girl/1boy, character name, from what series, everything else in any order, artists,
    # quality/metadata tags", one list (the card names no BREAK); a tagger's bare artist names stay bare
    ("nai-v2-fm", "masterpiece, long_hair, by wlop, neon_genesis_evangelion, ayanami_rei, 1girl, smile, absurdres",
     "1girl, ayanami rei, neon genesis evangelion, long hair, smile, by wlop, masterpiece, absurdres"),
    ("nai-v2-fm", "best quality, 1girl, frieren, kantoku, sousou_no_frieren, elf",
     "1girl, frieren, sousou no frieren, elf, kantoku, best quality"),
    # Anima: quality/meta, 1girl, character, series, @artist, general; natural language kept; no BREAK
    ("anima", "long_hair, @wlop, 1girl, masterpiece BREAK hatsune_miku, vocaloid, "
              "A girl sings on a stage under blue lights.",
     "masterpiece, 1girl, hatsune miku, vocaloid, @wlop, long hair, A girl sings on a stage under blue lights."),
    ("anima", "smile, by kantoku, solo BREAK (1girl:1.2)", "(1girl:1.2), @kantoku, smile, solo"),
    # custom: the node's own options, as before presets existed
    ("custom", "by kantoku, best quality BREAK 1girl, hatsune_miku", "best quality BREAK 1girl, hatsune miku BREAK by kantoku"),
]


@pytest.mark.parametrize("preset, prompt, expected", PRESET_TABLE)
def test_presets_follow_the_model_cards(tags, preset, prompt, expected):
    options = preset_options(preset, NormalizeOptions(artists_to_own_chunk=True))
    out = normalize(prompt, options, tags)
    assert out == expected
    assert normalize(out, options, tags) == out  # a preset's output is a fixed point too


def test_unknown_preset_names_the_setting():
    with pytest.raises(ValueError, match="'preset'"):
        preset_options("sdxl", NormalizeOptions())


# --- hostile input: bounded, linear, no recursion -----------------------------------------------------

HOSTILE = [
    "(a:" + "1" * 40000 + "x)",
    "(a:" + "1." * 20000 + ")",
    "(" * 2000 + "a" + ")" * 2000,
    "x (" * 20000 + "a" + ")" * 20000,
    "(" * 40000,
    "," * 40000,
    "BREAK " * 20000,
    "\\" * 40001,
    ">:( " * 20000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_prompts_finish_quickly(text):
    start = time.process_time()
    once = normalize(text)
    split_break(text)
    assert normalize(once) == once
    assert time.process_time() - start < 10  # generous: all of these take well under a second


def test_deep_brackets_keep_their_weight_without_recursion():
    assert normalize("(" * 3000 + "long_hair:1.2" + ")" * 3000) == "(" * 3000 + "long hair:1.2" + ")" * 3000


def test_control_and_bidi_characters_are_cleaned():
    assert normalize("long_hair\u202e, \x00\x07smile\u200b, blue\u2066_eyes") == "long hair, smile, blue eyes"


def test_size_is_bounded():
    with pytest.raises(ValueError, match="'text'"):
        normalize("a" * 1_000_001)


# --- idempotence with the tag list and every preset ---------------------------------------------------

PIECES = ["love_live!", "wlop", "@kantoku", "by wlop", "1girl", "masterpiece", "blueeyes", "mouth open", "hatsune_miku",
          "vocaloid", "(smile:1.2)", "((long_hair))", "karin_(blue_archive)", "A girl sits.", "BREAK", "@_@", "^_^",
          "score_9", "made_up_tag!", "embedding:x_y", "absurdres", "k-on!", "(a, b)", ">:(", "oil_painting_(medium)",
          "by the river she sings softly", "x (y)", "solo", "b)", "(c"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from([", ", ",", " ", " BREAK "])), max_size=12),
       st.sampled_from(PRESET_NAMES), st.booleans(), st.booleans())
def test_idempotent_with_tag_list_and_presets(pieces, preset, resolve, lowercase):
    tags = load_tag_list()
    text = "".join(p + s for p, s in pieces)
    options = preset_options(preset, NormalizeOptions(True, True, lowercase, resolve))
    once = normalize(text, options, tags)
    assert normalize(once, options, tags) == once


SYNTAX_PIECES = ["longhair", "2 girls", "kantoku", "@kantoku", "smile", "masterpiece", "k-on!", "1girl",
                 "A girl stands.", "flat colors", "blue_eyes", ", ", ",", " ", "(", ")", ": 0.9", ": 0.9,)", ":1.2, )",
                 " BREAK ", "\n", "[", "]", "{", "}", "\\", "_", "\uff08", "\uff09", "\uff1a"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(SYNTAX_PIECES), max_size=10), st.sampled_from(PRESET_NAMES), st.booleans())
def test_idempotent_with_tag_list_on_groups_and_weights(pieces, preset, resolve):
    """Tags the list resolves, orders or prefixes inside groups whose weights are written loosely
    (`(longhair: 0.9,)`: a probe of this kind found the tag left for a second run)."""
    tags = load_tag_list()
    options = preset_options(preset, NormalizeOptions(resolve_aliases=resolve))
    once = normalize("".join(pieces), options, tags)
    assert normalize(once, options, tags) == once


# --- the fast steps agree with the general ones ------------------------------------------------------


@pytest.fixture(scope="module")
def spellings(rows):
    """Tags as users write them: names from the list (raw), their aliases, and a few other kinds."""
    names = [r[0] for r in rows[:20000]]
    aliases = [a for r in rows[:20000] for a in r[3].split(",") if a and not a.startswith("/")]
    return names, aliases


def _general_leaves(self, spans):
    """_Normalizer.leaves without its fast steps: every comma piece through general_leaf."""
    items = []
    for start, end, _ in spans:
        text = " ".join(self.text[start:end].split())
        items.append(self.general_leaf(text, text.lower(), start) if text else None)
    return items


def _three_ways(text, options, tags):
    """(prompt, report lines) with the fast steps, without the list's spellings, and with general steps only."""
    def run():
        out, report = normalize_with_report(text, options, tags)
        return out, report.lines()

    fast = run()
    with pytest.MonkeyPatch.context() as patch:
        if tags is not None:
            patch.setattr(tags, "as_written", lambda _text: None)
        unlisted = run()
        patch.setattr(booru._Normalizer, "leaves", _general_leaves)
        general = run()
    return fast, unlisted, general


@settings(max_examples=400, deadline=None)
@given(st.data(), st.sampled_from(PRESET_NAMES), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_fast_steps_give_what_the_general_steps_give(spellings, tags, data, preset, resolve, lowercase, drop, with_list):
    names, aliases = spellings
    piece = st.one_of(
        st.sampled_from(names), st.sampled_from(names).map(str.upper), st.sampled_from(names).map(lambda n: n.replace("_", " ")),
        st.sampled_from(aliases), st.sampled_from(PIECES + sorted(KAOMOJI) + sorted(QUALITY_TAGS) + ["multiple_girls", "6+girls"]),
        st.text(alphabet="aBk_ (),:\\.@1!?^>_<-'\u00e9\u212a\t", max_size=12))
    pieces = data.draw(st.lists(st.tuples(piece, st.booleans(), st.sampled_from([", ", ",", " BREAK ", ",  ", ",\n"])),
                                min_size=1, max_size=12))
    text = "".join((f"({p}:1.2)" if weighted else p) + sep for p, weighted, sep in pieces)
    options = preset_options(preset, NormalizeOptions(drop, preset == "custom" and drop, lowercase, resolve))
    fast, unlisted, general = _three_ways(text, options, tags if with_list else None)
    assert fast == unlisted == general, text


def test_fast_steps_on_the_whole_list(rows, tags):
    """Every tag of the list, raw and in prompt form, as long prompts: the same either way."""
    names = [r[0] for r in rows]
    for start in range(0, len(names), 20000):
        chunk = names[start:start + 20000]
        for text in (", ".join(chunk), ", ".join(prompt_form(n) for n in chunk)):
            fast, unlisted, general = _three_ways(text, preset_options("nai-v2-fm", NormalizeOptions(resolve_aliases=True)), tags)
            assert fast == unlisted == general


def test_a_group_between_words_is_emphasis_unless_the_list_knows_the_tag(tags):
    """A Danbooru qualifier ends its tag: `(red)` in `wearing a (red) dress` is the user's emphasis and
    stays as ComfyUI reads it; the list tells the tags that go on after their parentheses."""
    kept = "1girl, wearing a (red) dress, girl (pretty) smiling"
    assert normalize(kept, NormalizeOptions(), tags) == kept
    assert normalize("karin (blue archive) smiling", NormalizeOptions(), tags) == "karin \\(blue archive\\) smiling"
    assert normalize("evangelion: 3.0 you can (not) redo", NormalizeOptions(), tags) == "evangelion: 3.0 you can \\(not\\) redo"
    assert normalize("oil painting (medium)", NormalizeOptions(), tags) == "oil painting \\(medium\\)"


def test_regressions_found_by_hypothesis(tags):
    rouwei = preset_options("rouwei", NormalizeOptions())
    assert normalize("@_@", rouwei, tags) == "@_@"  # a face, not an artist
    once = normalize("love_live! (a, b) BREAK ")
    assert normalize(once) == once
    nai = preset_options("nai-v2-fm", NormalizeOptions())
    once = normalize("1?_,1", nai, tags)
    assert normalize(once, nai, tags) == once


def test_by_and_a_general_tag_is_a_scene_not_an_artist(tags):
    """`by moonlight`, `by night`: the tag list knows the word after `by` as a general tag, so no preset
    makes it an `@` trigger or moves it to the artists' chunk; `by kantoku` (an artist) still moves."""
    anima = preset_options("anima", NormalizeOptions())
    assert normalize("1girl, sitting on a bench, by moonlight, by night", anima, tags) == \
        "1girl, sitting on a bench, by moonlight, by night"
    rouwei = preset_options("rouwei", NormalizeOptions())
    assert normalize("1girl, by candlelight, by kantoku", rouwei, tags) == "by kantoku BREAK 1girl, by candlelight"


def test_a_known_tag_written_with_capitals_does_not_start_a_sentence(tags):
    """`Hatsune Miku` is a character tag: it keeps its place in the tag order, and the sentence after it
    is one text item."""
    anima = preset_options("anima", NormalizeOptions())
    out = normalize("Hatsune Miku, long hair, 1girl, She sings, eyes closed, under blue lights.", anima, tags)
    assert out == "1girl, Hatsune Miku, long hair, She sings, eyes closed, under blue lights."
    assert normalize(out, anima, tags) == out


def test_bare_artist_names_the_list_knows_go_to_the_artists_chunk(tags):
    options = NormalizeOptions(artists_to_own_chunk=True)
    assert normalize("1girl, wlop, kantoku, smile", options, tags) == "1girl, smile BREAK wlop, kantoku"
    assert normalize("1girl, wlop, kantoku, smile", options) == "1girl, wlop, kantoku, smile"  # no list: unknown


def test_callers_at_once_read_the_list_once(tmp_path, monkeypatch):
    """The normaliser node and the editor's counter may ask for a list at the same moment: one reads it,
    the others wait for that read instead of parsing the file again each."""
    import threading

    from flowanime.prompt import tags

    path = tmp_path / "tags.csv"
    path.write_text("long_hair,0,100,\"longhair\"\n", encoding="utf-8")
    reads = []
    real_read = tags.read_tag_csv

    def slow_read(*args, **kwargs):
        reads.append(args)
        time.sleep(0.2)  # long enough for every other caller to arrive while the first reads
        return real_read(*args, **kwargs)

    monkeypatch.setattr(tags, "read_tag_csv", slow_read)
    monkeypatch.setattr(tags, "_cache", {})
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_tag_list(path))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1 and len(results) == 6 and all(r is results[0] for r in results)


# Real prompts that an earlier version misread (a review's corpus of 2,283 public prompts: Civitai
# sample images, NAI prompt books, A1111 style files, regional-prompter examples), shortened.
REAL_PROMPT_CASES = [
    # AND sub-prompts (Latent Couple, composable diffusion, comfyui-prompt-control), one per line:
    # each is a prompt of its own, so its tags are not duplicates of another's
    ("2girls, park\nAND 2girls, park, red hair\nAND 2girls, park, blue hair", NormalizeOptions(),
     "2girls, park AND 2girls, park, red hair AND 2girls, park, blue hair"),
    ("by wlop, 1girl, masterpiece AND by kantoku, 1boy", preset_options("rouwei", NormalizeOptions()),
     "by wlop, masterpiece BREAK 1girl AND by kantoku BREAK 1boy"),
    ("1girl, smile AND 1girl, smile", preset_options("anima", NormalizeOptions()), "1girl, smile AND 1girl, smile"),
    ("a cat and a dog, ANDROID, (a AND b)", NormalizeOptions(), "a cat and a dog, ANDROID, (a AND b)"),
    # a sub-prompt the preset empties goes with its AND (`AND {1girl}` reached CLIP with the word AND)
    ("{masterpiece} AND {1girl}", preset_options("nekofantasia", NormalizeOptions()), "{1girl}"),
    ("1girl AND masterpiece:0.5 AND smile", preset_options("nekofantasia", NormalizeOptions()), "1girl AND smile"),
    # an emoticon's parenthesis is text, as the parser reads it, and does not hide the AND after it
    ("1girl, smile, >:( AND 1boy, smile", NormalizeOptions(), "1girl, smile, >:\\( AND 1boy, smile"),
    # a doubled group is emphasis: no emoticon or Danbooru qualifier is written `((…))`
    ("1girl, ((b&w)), blurry", NormalizeOptions(), "1girl, ((b&w)), blurry"),
    ("1girl, white ((unbuttoned shirt)), smile", NormalizeOptions(), "1girl, white ((unbuttoned shirt)), smile"),
    # emphasis inside A1111's [...] and NovelAI's {...}
    ("1girl, [(dark hair)], {(flowery bubbles)}, [(white background)::0.2]", NormalizeOptions(),
     "1girl, [(dark hair)], {(flowery bubbles)}, [(white background)::0.2]"),
    # a comma before a group's close
    ("((best quality, masterpiece, perfect face,)), 1girl", NormalizeOptions(),
     "((best quality, masterpiece, perfect face)), 1girl"),
    # a quality tag with a misplaced weight inside a group: dropped in one run, the group with it
    ("(masterpiece:1.2, best quality), 1girl, solo", NormalizeOptions(drop_quality_tags=True), "1girl, solo"),
    ("((masterpiece:1.4, best quality)), 1girl", NormalizeOptions(drop_quality_tags=True), "1girl"),
    # quality tags in NovelAI's braces or A1111's brackets (in linked text: the editor's box reads `{x}` as a choice)
    ("{{masterpiece}}, {best quality}, [[worst quality]], [masterpiece, 1girl], 1girl",
     NormalizeOptions(drop_quality_tags=True), "[masterpiece, 1girl], 1girl"),
    ("1girl, {{masterpiece}}", preset_options("anima", NormalizeOptions()), "{{masterpiece}}, 1girl"),
    # a zero-width space between two words is a word break (CLIP reads it as one)
    ("blurry, bad feet\u200b\u200blowres, bad anatomy", NormalizeOptions(), "blurry, bad feet lowres, bad anatomy"),
    # an alias that resolves to a people tag is ordered as one in the same run
    ("smile, 2 girls", preset_options("nai-v2-fm", NormalizeOptions(resolve_aliases=True)), "2girls, smile"),
]


@pytest.mark.parametrize("prompt, options, expected", REAL_PROMPT_CASES)
def test_real_prompts_an_earlier_version_misread(tags, prompt, options, expected):
    assert normalize(prompt, options, tags) == expected
    assert normalize(expected, options, tags) == expected


# What CJK keyboards and word processors type, read as the ASCII syntax and spelling they stand for.
TYPED_VARIANT_CASES = [
    # a weight in full-width parentheses, colon or digits (an IME left on): ComfyUI reads no weight there
    ("\uff08long hair\uff1a1.2\uff09, 1girl", NormalizeOptions(), "(long hair:1.2), 1girl"),
    ("1girl, (smile\uff1a\uff11\uff0e\uff13)", NormalizeOptions(), "1girl, (smile:1.3)"),
    ("(black hair\uff1a0.8), \u5c11\u5973", NormalizeOptions(), "(black hair:0.8), \u5c11\u5973"),
    # a group with one parenthesis of each width, and a whole item of ASCII text in full-width ones
    ("(2girls\uff09, \uff08mutual gaze\uff09, smile", NormalizeOptions(), "(2girls), (mutual gaze), smile"),
    # not a weight: CJK prose in full-width parentheses, a title's number, an unclosed group
    ("\u5c11\u5973\uff08\u9ed2\u9aea\uff09\u304c\u7acb\u3064", NormalizeOptions(),
     "\u5c11\u5973\uff08\u9ed2\u9aea\uff09\u304c\u7acb\u3064"),
    ("\u6642\u523b\uff08\u5348\u5f8c\uff1a1999\uff09", NormalizeOptions(), "\u6642\u523b\uff08\u5348\u5f8c\uff1a1999\uff09"),
    ("\uff08long hair\uff1a1.2, 1girl", NormalizeOptions(), "\uff08long hair\uff1a1.2, 1girl"),
    ("\u51dd\u89c6\uff08mutual gaze\uff09, \uff08\u9ed2\u9aea\uff09", NormalizeOptions(),
     "\u51dd\u89c6\uff08mutual gaze\uff09, \uff08\u9ed2\u9aea\uff09"),
    # a list of quality tags in NovelAI's braces or A1111's brackets (linked text) is dropped whole
    ("{masterpiece, best quality}, 1girl, [worst_quality, score_9:1.2], solo", NormalizeOptions(drop_quality_tags=True),
     "1girl, solo"),
    ("{masterpiece, 1girl}, {masterpiece|best quality}, [masterpiece:best quality:0.5]",
     NormalizeOptions(drop_quality_tags=True), "{masterpiece, 1girl}, {masterpiece|best quality}, [masterpiece:best quality:0.5]"),
    # a typographic apostrophe in a tag the list knows with a straight one
    ("1girl, jeanne d\u2019arc (fate), smile", NormalizeOptions(), "1girl, jeanne d'arc \\(fate\\), smile"),
    ("jeanne_d\u2019arc_(fate), 1girl", NormalizeOptions(), "jeanne d'arc \\(fate\\), 1girl"),
    # prose keeps its apostrophes
    ("A girl\u2019s smile lights the room.", NormalizeOptions(), "A girl\u2019s smile lights the room."),
    # a review's cases (helper-65): nested and listed emphasis typed in full width is converted whole
    ("\uff08\uff08masterpiece\uff09\uff09\uff0c\uff081girl\uff09\uff0csolo", NormalizeOptions(),
     "((masterpiece)), (1girl), solo"),
    ("\uff08\uff08best quality\uff1a1.2\uff09\uff09, 1girl", NormalizeOptions(), "((best quality:1.2)), 1girl"),
    ("\uff08masterpiece\uff0cbest quality\uff09\uff0c\uff08smile\uff09", NormalizeOptions(),
     "(masterpiece, best quality), (smile)"),
    ("\uff08masterpiece\uff09\uff08smile\uff09", NormalizeOptions(), "(masterpiece)(smile)"),
    # ratios, times and ages are no weights
    ("1girl, \uff0816\uff1a9\uff09", NormalizeOptions(), "1girl, \uff0816\uff1a9\uff09"),
    ("\u5c11\u5973\uff0c\uff08\u62cd\u6444\u4e8e\u65e9\u4e0a\uff17\uff1a\uff10\uff10\uff09", NormalizeOptions(),
     "\u5c11\u5973, \uff08\u62cd\u6444\u4e8e\u65e9\u4e0a7\uff1a00\uff09"),
    ("\uff08\u5e74\u9f84\uff1a5\uff09", NormalizeOptions(), "\uff08\u5e74\u9f84\uff1a5\uff09"),
    ("\u753b\u9762\u6bd4\u4f8b\uff0816\uff1a9\uff09", NormalizeOptions(), "\u753b\u9762\u6bd4\u4f8b\uff0816\uff1a9\uff09"),
    # letters and digits typed in full width are ASCII (CLIP reads them as bytes), in groups and in prose;
    # the group they leave is ASCII text among ASCII text, emphasis
    ("\uff08\uff11\uff47\uff49\uff52\uff4c\uff09\uff0c\uff53\uff4f\uff4c\uff4f", NormalizeOptions(), "(1girl), solo"),
    ("\uff34\u30b7\u30e3\u30c4\u3092\u7740\u305f\u5c11\u5973", NormalizeOptions(), "T\u30b7\u30e3\u30c4\u3092\u7740\u305f\u5c11\u5973"),
    ("1girl, \uff08\uff11\uff16\uff1a\uff19\uff09", NormalizeOptions(), "1girl, \uff0816\uff1a9\uff09"),
    # and so is punctuation typed in full width beside them: the tags the list knows (ｋ－ｏｎ！, ＾＿＾,
    # ｆａｔｅ／ｓｔａｙ＿ｎｉｇｈｔ, ｃ．ｃ．), an Anima trigger (＠ａｒｔｉｓｔ); among other scripts it is theirs
    ("\uff4b\uff0d\uff4f\uff4e\uff01\uff01\uff0c\uff3e\uff3f\uff3e", NormalizeOptions(), "k-on!!, ^_^"),
    ("\uff46\uff41\uff54\uff45\uff0f\uff53\uff54\uff41\uff59\uff3f\uff4e\uff49\uff47\uff48\uff54\uff0c"
     "\uff43\uff0e\uff43\uff0e", NormalizeOptions(), "fate/stay night, c.c."),
    ("\uff20\uff4b\uff41\uff4e\uff54\uff4f\uff4b\uff55, 1girl", NormalizeOptions(), "@kantoku, 1girl"),
    ("\u304b\u308f\u3044\u3044\uff01\uff0c1girl, \uff08\uff3e\u03c9\uff3e\uff09", NormalizeOptions(),
     "\u304b\u308f\u3044\u3044\uff01, 1girl, \uff08\uff3e\u03c9\uff3e\uff09"),
    # a full-width colon before an ASCII letter, or after one at an item's end, cannot begin a weight: the
    # emoticon tags (：ｄ, ｄ：), a qualifier (ｒｅ：ｚｅｒｏ), RouWei's `artist:` prefix; before a digit it is the
    # weight rules' (a ratio stays), after a CJK word or a digit the language's
    ("\uff1a\uff44\uff0c\uff44\uff1a\uff0c\uff45\uff4d\uff49\uff4c\uff49\uff41\u3000\uff08\uff52\uff45\uff1a"
     "\uff5a\uff45\uff52\uff4f\uff09", NormalizeOptions(), ":d, d:, emilia \\(re:zero\\)"),
    ("\uff08\uff1a\uff44\uff1a\uff11\uff0e\uff12\uff09, 1girl, \uff08\uff41\uff53\uff50\uff45\uff43\uff54 4\uff1a3\uff09",
     NormalizeOptions(), "(:d:1.2), 1girl, \uff08aspect 4\uff1a3\uff09"),
    ("\uff41\uff52\uff54\uff49\uff53\uff54\uff1a\uff57\uff4c\uff4f\uff50, 1girl", preset_options("rouwei", NormalizeOptions()),
     "by wlop BREAK 1girl"),
    ("\u7248\u672c\uff1amasterpiece, \u753b\u8d282\uff1aOriginal", NormalizeOptions(),  # 版本：, 画质2：(real prompts)
     "\u7248\u672c\uff1amasterpiece, \u753b\u8d282\uff1aOriginal"),
    # a LoRA tag typed in full width is the one LoRA-loading nodes read; without `lora:` brackets stay as typed
    ("\uff1c\uff4c\uff4f\uff52\uff41\uff1a\uff58\uff1a\uff10\uff0e\uff18\uff1e, 1girl, <lora\uff1a\u9ed2\u9aea\uff1a0.8>",
     NormalizeOptions(), "<lora:x:0.8>, 1girl, <lora:\u9ed2\u9aea:0.8>"),
    ("\uff1c\uff4c\uff4f\uff52\uff41 \uff58\uff1e, 1girl, <lora:y\uff1e", NormalizeOptions(), "\uff1clora x\uff1e, 1girl, <lora:y>"),
    # one tag per line, BREAK and AND around a full-width group
    ("1girl\n\uff08smile\uff09\nblush", NormalizeOptions(), "1girl, (smile), blush"),
    ("1girl BREAK \uff08smile\uff09", NormalizeOptions(), "1girl BREAK (smile)"),
    ("1girl AND\uff08long hair\uff1a1.2\uff09", NormalizeOptions(), "1girl AND (long hair:1.2)"),
    # a typographic apostrophe in an alias
    ("valentine\u2019s day, 1girl", NormalizeOptions(), "valentine's day, 1girl"),
    # artists the list knows keep `by ` even where their name starts like a place (`by a river`)
    ("a re, 1girl", preset_options("rouwei", NormalizeOptions()), "by a re BREAK 1girl"),
    ("artist:the only shoe, 1girl", preset_options("rouwei", NormalizeOptions()), "by the only shoe BREAK 1girl"),
    ("@a, 1girl", preset_options("rouwei", NormalizeOptions()), "@a BREAK 1girl"),
    # a second review's cases (helper-67): ratios, ages and heights in CJK prose are no weights
    ("\u4e00\u4e2a\u5973\u5b69\uff08\u6bd4\u4f8b2\uff1a3\uff09", NormalizeOptions(),
     "\u4e00\u4e2a\u5973\u5b69\uff08\u6bd4\u4f8b2\uff1a3\uff09"),
    ("1girl, \uff08aspect ratio 3\uff1a2\uff09", NormalizeOptions(), "1girl, \uff08aspect ratio 3\uff1a2\uff09"),
    ("(\u6bd4\u4f8b 2\uff1a3), 1girl", NormalizeOptions(), "(\u6bd4\u4f8b 2\uff1a3), 1girl"),
    ("\u5c11\u5973\uff0c\uff08\u5e74\u9f84\uff1a3\uff09", NormalizeOptions(), "\u5c11\u5973, \uff08\u5e74\u9f84\uff1a3\uff09"),
    ("\u89d2\u8272\uff08\u8eab\u9ad8\uff1a1.6\uff09", NormalizeOptions(), "\u89d2\u8272\uff08\u8eab\u9ad8\uff1a1.6\uff09"),
    ("(score_9\uff1a1.2), (smile\uff1a2)", NormalizeOptions(), "(score_9:1.2), (smile:2)"),
    # a group after CJK punctuation, a kaomoji, accented text: punctuation, as typed
    ("\u6211\u559c\u6b22\u3002\uff08masterpiece\uff09", NormalizeOptions(), "\u6211\u559c\u6b22\u3002\uff08masterpiece\uff09"),
    ("\u300c\u30c4\u30a4\u30f3\u30c6\u30fc\u30eb\u300d\uff08twintails\uff09", NormalizeOptions(),
     "\u300c\u30c4\u30a4\u30f3\u30c6\u30fc\u30eb\u300d\uff08twintails\uff09"),
    ("1girl, \uff08\uff3e\u03c9\uff3e\uff09", NormalizeOptions(), "1girl, \uff08\uff3e\u03c9\uff3e\uff09"),
    ("1girl, \uff08caf\u00e9\uff09", NormalizeOptions(), "1girl, \uff08caf\u00e9\uff09"),
    ("\uff08long hair\uff1a1\u30022\uff09, 1girl", NormalizeOptions(), "\uff08long hair\uff1a1\u30022\uff09, 1girl"),
    # the Japanese keyboard's full-width apostrophe
    ("valentine\uff07s day, 1girl", NormalizeOptions(), "valentine's day, 1girl"),
    # a weight written as the last item before a stray comma: the group's weight
    ("(masterpiece, best quality, :1.2,), 1girl", NormalizeOptions(), "(masterpiece, best quality:1.2), 1girl"),
    # a weight before a stray comma at a group's close is read as the weight it becomes once tidied
    ("1girl, (long hair: 1.2,), smile", NormalizeOptions(), "1girl, (long hair:1.2), smile"),
    # and when the item it weighs is the group's duplicate, the duplicate goes now (it did next time; fuzz)
    ("(long hair, long_hair:1.2_), smile", NormalizeOptions(), "(long hair:1.2), smile"),
    ("(a, a:1_), b", NormalizeOptions(), "(a:1), b"),
    # a lone backslash before a group's close: a space keeps the `)` a close for ComfyUI (`\\)` escapes it)
    ("(a, b\\_ )", NormalizeOptions(), "(a, b\\ )"),
]


@pytest.mark.parametrize("prompt, options, expected", TYPED_VARIANT_CASES)
def test_typed_variants_of_weights_quality_lists_and_apostrophes(tags, prompt, options, expected):
    assert normalize(prompt, options, tags) == expected
    assert normalize(expected, options, tags) == expected


def test_the_report_reads_full_width_groups_on_their_own_lines(tags):
    """The first pass reads `（smile）` between lines as `(smile)`."""
    _, report = normalize_with_report("1girl\n\uff08smile\uff09\nblush", NormalizeOptions(), tags)
    assert "smile" in report.known and not report.unknown


@pytest.mark.parametrize("prompt, options, expected", [
    ("(longhair: 0.9,), smile", NormalizeOptions(resolve_aliases=True), "(long hair:0.9), smile"),
    ("smile, (2girls: 0.9,)", preset_options("nai-v2-fm", NormalizeOptions()), "(2girls:0.9), smile"),
    ("smile, (kantoku: 0.9,)", preset_options("rouwei", NormalizeOptions()), "(by kantoku:0.9) BREAK smile"),
])
def test_a_weight_read_at_a_groups_tidied_end_leaves_a_tag_that_is_looked_up(tags, prompt, options, expected):
    """`(longhair: 0.9,)` holds `longhair: 0.9` until its stray comma goes; the tag the weight leaves is
    resolved, placed and prefixed in the same run (a fuzz-style probe found a second run doing it)."""
    assert normalize(prompt, options, tags) == expected
    assert normalize(expected, options, tags) == expected


def test_the_report_lists_the_tags_of_the_output(tags):
    _, report = normalize_with_report("(long hair: 1.2,), 1girl, (longhair: 0.9,)", NormalizeOptions(), tags)
    assert list(report.known) == ["long hair", "1girl"] and not report.unknown
    assert list(report.aliases) == ["longhair"] and report.aliases["longhair"][0] == "long hair"
