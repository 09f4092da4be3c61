"""The bundled workflows opened from ComfyUI's template browser in its real graph editor (headless
Chromium), as a user does: no console error or failed request (a missing thumbnail is a 404), no
missing-node dialog, the editor's own API conversion equal to the one the other tests validate, and
the layout the editor computes: no node smaller than it needs, no two nodes overlapping, no widget
covered, no link running backwards or behind a node. Screenshots go to a folder under /tmp (printed).
Skips, with the reason shown, where Chromium or the playwright package is missing."""

import importlib.util
import json
import os
import shutil
import sys

import pytest
from conftest import PACK_ROOT


def load_check():
    spec = importlib.util.spec_from_file_location("check_browser", PACK_ROOT / "scripts" / "check_workflows_in_browser.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    return check


def test_workflows_open_cleanly_from_the_template_browser(comfyui, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no playwright package (pip install playwright)")
    check = load_check()
    workflows = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((PACK_ROOT / "example_workflows").glob("*.json"))}
    base, shots = tmp_path / "base", tmp_path / "shots"  # pytest's temporary folders, never the repository
    shots.mkdir()
    check.prepare_base(base, workflows)
    port = check.free_port()
    server = check.start_comfyui(comfyui.comfy_path, base, port, os.environ.get("FLOWANIME_PYTHON", sys.executable))
    try:
        problems = check.check(port, workflows, comfyui.nodes.NODE_CLASS_MAPPINGS, shots)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots: {shots}")
    assert problems == []
    assert sorted(p.name for p in shots.glob("*.png")) == sorted(name[:-5] + ".png" for name in workflows)


def test_thumbnails_show_the_current_workflows():
    """Each thumbnail carries the SHA-256 of the workflow file it was rendered from; a workflow changed
    since needs `python scripts/check_workflows_in_browser.py --write-thumbnails` (Chromium)."""
    from PIL import Image

    check = load_check()
    for path in sorted((PACK_ROOT / "example_workflows").glob("*.json")):
        with Image.open(path.with_suffix(".jpg")) as image:
            assert image.info.get("comment", b"").decode() == check.thumbnail_comment(path.read_text(encoding="utf-8")), path.stem
