"""The bundled workflows in ComfyUI's real graph editor (headless Chromium): no missing-node dialog, no
console warnings, and the editor's own API conversion equal to the one the other tests validate.
Skips, with the reason shown, where Chromium or the playwright package is missing."""

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import PACK_ROOT


def test_workflows_open_cleanly_in_the_graph_editor(comfyui):
    if shutil.which("chromium") is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no playwright package (pip install playwright)")
    spec = importlib.util.spec_from_file_location("check_browser", PACK_ROOT / "scripts" / "check_workflows_in_browser.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    workflows = {p.name: json.loads(p.read_text()) for p in sorted((PACK_ROOT / "example_workflows").glob("*.json"))}
    base = Path(tempfile.mkdtemp(prefix="flowanime-browser-"))
    check.prepare_base(base, workflows)
    port = check.free_port()
    server = check.start_comfyui(comfyui.comfy_path, base, port, os.environ.get("FLOWANIME_PYTHON", sys.executable))
    try:
        problems = check.check(port, workflows, comfyui.nodes.NODE_CLASS_MAPPINGS)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert problems == []
