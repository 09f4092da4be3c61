"""Open every bundled workflow in ComfyUI's real graph editor (headless Chromium) and check it.

For each file in example_workflows/: no missing-node dialog, no warning or error in the browser
console while it loads, every node type known to the editor, and the editor's own conversion to the
API format (app.graphToPrompt, what Queue sends) equal to the one the test suite validates
(tests/flowanime_testkit.ui_to_api). Prints a line per workflow; exits 1 on any problem.

Needs: Chromium (Debian: apt-get install chromium) and the playwright package (pip install
playwright; no browser download: it drives /usr/bin/chromium). Uses the test environment's ComfyUI.

    python scripts/check_workflows_in_browser.py
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tests"))

import flowanime_testkit as kit  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_comfyui(comfy: Path, base: Path, port: int, python: str):
    log = open(base / "comfyui.log", "w")
    proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                             "--base-directory", str(base)], cwd=comfy, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"ComfyUI exited: see {base / 'comfyui.log'}") from None
            time.sleep(1)
    proc.kill()
    raise SystemExit("ComfyUI did not start in 180 s")


def prepare_base(base: Path, workflows: dict) -> None:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "user").mkdir()
    (base / "custom_nodes" / "FlowAnime").symlink_to(PACK_ROOT, target_is_directory=True)
    for folder in set(kit.MODEL_FOLDERS.values()):
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
    for wf in workflows.values():  # stand-in files so the loaders' lists hold the names used
        for node in wf["nodes"]:
            for value in node.get("widgets_values", []):
                if isinstance(value, str) and value.endswith(".safetensors"):
                    for folder in set(kit.MODEL_FOLDERS.values()):
                        (base / "models" / folder / value).write_bytes(b"")


def check(port: int, workflows: dict, node_classes: dict) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems = []
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        console = []
        page.on("console", lambda msg: console.append((msg.type, msg.text)))
        for name, wf in workflows.items():
            # a fresh editor per workflow, so one file's dialogs cannot be blamed on the next
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
            page.wait_for_timeout(500)
            console.clear()
            page.evaluate("wf => window.app.loadGraphData(wf)", wf)
            page.wait_for_timeout(1500)
            found = []
            unknown = page.evaluate(
                "types => types.filter(t => !(t in window.LiteGraph.registered_node_types))",
                sorted({n["type"] for n in wf["nodes"]}))
            if unknown:
                found.append(f"node types unknown to the editor: {unknown}")
            body = page.evaluate("() => document.body.innerText")
            if "missing" in body.lower():
                found.append("the editor reports missing nodes or models")
            noisy = [text for kind, text in console if kind in ("warning", "error")]
            if noisy:
                found.append(f"console: {noisy[:5]}")
            theirs = page.evaluate("async () => (await window.app.graphToPrompt()).output")
            ours = kit.ui_to_api(wf, node_classes)
            theirs = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in theirs.items()}
            if theirs != ours:
                diff = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
                found.append(f"graphToPrompt differs from ui_to_api at nodes {diff}: "
                             f"{[(theirs.get(k), ours.get(k)) for k in diff[:2]]}")
            print(f"{'OK  ' if not found else 'FAIL'} {name}" + "".join(f"\n     - {f}" for f in found))
            problems += found
        browser.close()
    return problems


def main():
    comfy = kit.find_comfyui()
    if comfy is None:
        sys.exit(kit.NO_COMFYUI_REASON)
    workflows = {p.name: json.loads(p.read_text()) for p in sorted((PACK_ROOT / "example_workflows").glob("*.json"))}
    base = Path(tempfile.mkdtemp(prefix="flowanime-browser-"))
    prepare_base(base, workflows)
    harness = kit.ComfyHarness.start(comfy, PACK_ROOT, Path(tempfile.mkdtemp()))
    port = free_port()
    server = start_comfyui(comfy, base, port, os.environ.get("FLOWANIME_PYTHON", sys.executable))
    try:
        problems = check(port, workflows, harness.nodes.NODE_CLASS_MAPPINGS)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{len(workflows)} workflows checked in {shutil.which('chromium') or 'chromium'}: "
          f"{'no problems' if not problems else f'{len(problems)} problems'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
