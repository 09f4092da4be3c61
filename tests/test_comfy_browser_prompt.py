"""The live token/chunk counter and the reports on the nodes in ComfyUI's real graph editor (headless
Chromium): the counter equals the encoder's own chunking on a table of prompts, typed into the node,
and after a run the chunk and tag reports appear on the nodes. Skips, with the reason shown, where
Chromium or the playwright package is missing."""

import importlib.util
import os
import shutil
import sys

import flowanime_testkit as kit
import pytest
from conftest import PACK_ROOT


def test_counter_equals_the_encoder_and_reports_show_on_the_nodes(comfyui, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no playwright package (pip install playwright)")
    spec = importlib.util.spec_from_file_location("check_counter", PACK_ROOT / "scripts" / "check_prompt_counter_in_browser.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    encoder = comfyui.pack_submodule("comfy_adapter.clip")

    def expected_chunks(prompt, backtrack):
        return encoder.tokenize(clip, prompt, backtrack).chunkings[0]["chunks"]

    report = encoder.tokenize(clip, check.PROMPTS[1][0], 20).report
    problems = check.run(comfyui.comfy_path, comfyui.models_dir / "text_encoders" / kit.CLIP_L, expected_chunks, report,
                         os.environ.get("FLOWANIME_PYTHON", sys.executable), tmp_path)
    assert problems == []
