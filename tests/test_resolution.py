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
            assert resolve_size(name, 0, 0, sd3) == size  # ~1 MP presets suit SD3.5 (multiples of 64)


def test_family_rules():
    assert rule_for("SD3", 16).multiple == 64
    assert rule_for("SDXL", 4).multiple == 32 and rule_for("SDXLRefiner", 4).multiple == 32
    assert rule_for("SD15", 4).multiple == 8
    assert rule_for("Flux", 16).multiple == 16 and rule_for("Anima", 16).multiple == 16


def test_custom_sizes_are_checked_and_the_error_names_the_setting():
    assert resolve_size("custom", 960, 1344, rule_for("SD3", 16)) == (960, 1344)
    with pytest.raises(ValueError, match=r"width 1000 \(from 'width'\) is not a multiple of 64.*Use 960 or 1024"):
        resolve_size("custom", 1000, 1024, rule_for("SD3", 16))
    with pytest.raises(ValueError, match=r"height 1000 .* multiple of 32"):
        resolve_size("custom", 1024, 1000, rule_for("SDXL", 4))
    with pytest.raises(ValueError, match="'preset'"):
        resolve_size("2048x2048", 0, 0, rule_for("SD3", 16))


def test_every_size_the_nekofantasia_card_recommends_is_a_preset():
    card = [(1024, 1024), (896, 1152), (832, 1216), (768, 1344), (640, 1536),
            (1152, 896), (1216, 832), (1344, 768), (1536, 640)]  # "Recommended Resolutions"
    assert set(card) <= set(PRESETS.values())
