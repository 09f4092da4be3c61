"""Resolution presets and family constraints (plain Python)."""

import pytest

from flowanime.resolution.presets import PRESETS, resolve_size, rule_for


def test_every_preset_is_about_one_megapixel_or_a_card_size_and_fits_sd3():
    sd3 = rule_for("SD3", 16)
    for name, size in PRESETS.items():
        if size is None:
            continue
        w, h = size
        assert w * h <= 1.6e6
        if w * h >= 0.8e6:
            warnings = []
            assert resolve_size(name, 0, 0, sd3, warnings.append) == size
            assert warnings == []  # ~1 MP presets are on SD3.5's grid (multiples of 64)


def test_family_rules():
    """What each family needs, and the card's coarser grid where there is one."""
    assert (rule_for("SD3", 16).multiple, rule_for("SD3", 16).recommended) == (16, 64)
    assert (rule_for("SDXL", 4).multiple, rule_for("SDXL", 4).recommended) == (8, 32)
    assert rule_for("SDXLRefiner", 4).recommended == 32
    assert (rule_for("SD15", 4).multiple, rule_for("SD15", 4).recommended) == (8, 0)
    assert rule_for("Flux", 16).multiple == 16 and rule_for("Anima", 16).multiple == 16
    assert rule_for("PixArtAlpha", 4).multiple == 16 and rule_for("PixArtSigma", 4).multiple == 16
    assert rule_for("Wan22", 48, 16).multiple == 16 and rule_for("LTXV", 128, 32).multiple == 32
    pixels = rule_for("ChromaRadiance", 3, 1)
    assert pixels.multiple == 8 and "VAE" not in pixels.why  # pixel space has no VAE


def test_custom_sizes_are_checked_and_the_error_names_the_setting():
    assert resolve_size("custom", 960, 1344, rule_for("SD3", 16)) == (960, 1344)
    with pytest.raises(ValueError, match=r"width 1000 \(from 'width'\) is not a multiple of 16.*Use 992 or 1008"):
        resolve_size("custom", 1000, 1024, rule_for("SD3", 16))
    with pytest.raises(ValueError, match=r"height 1020 \(from 'height'\) is not a multiple of 8.*Use 1016 or 1024"):
        resolve_size("custom", 1024, 1020, rule_for("SDXL", 4))
    with pytest.raises(ValueError, match="'preset'"):
        resolve_size("2048x2048", 0, 0, rule_for("SD3", 16))


@pytest.mark.parametrize("family, channels, width, height, warned", [
    ("SD3", 16, 1200, 1600, "width 1200 (from 'width'/'height') is not a multiple of 64"),
    ("SDXL", 4, 1080, 1920, "width 1080 (from 'width'/'height') is not a multiple of 32"),
    ("SD3", 16, 1024, 1024, None), ("SDXL", 4, 832, 1216, None), ("SD15", 4, 520, 776, None),
])
def test_sizes_off_the_cards_grid_work_with_a_warning(family, channels, width, height, warned):
    """The models pad such sizes (ComfyUI's EmptySD3LatentImage steps by 16): a warning naming the
    card's nearest sides, not an error."""
    warnings = []
    assert resolve_size("custom", width, height, rule_for(family, channels), warnings.append) == (width, height)
    if warned is None:
        assert warnings == []
    else:
        (text,) = warnings
        assert warned in text and ("width 1152 or 1216" in text or "width 1056 or 1088" in text)


def test_every_size_the_nekofantasia_card_recommends_is_a_preset():
    card = [(1024, 1024), (896, 1152), (832, 1216), (768, 1344), (640, 1536),
            (1152, 896), (1216, 832), (1344, 768), (1536, 640)]  # "Recommended Resolutions"
    assert set(card) <= set(PRESETS.values())
