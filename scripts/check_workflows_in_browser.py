"""Open every bundled workflow from ComfyUI's template browser in headless Chromium and check it.

For each file in example_workflows/, as a user does: the Templates button in the sidebar (or the
template dialog ComfyUI opens on a first start), Custom Nodes -> FlowAnime, then the workflow's card.
Checked: no console error or warning and no failed request (a missing thumbnail is a 404) from
opening the dialog to the loaded graph; no missing-node dialog; every node type known to the editor;
the editor's own API conversion (app.graphToPrompt, what Queue sends) equal to the one the test suite
validates (tests/flowanime_testkit.ui_to_api); and the layout the editor computes: every node at least
as large as LGraphNode.computeSize() asks (no widget cut off), every widget inside its node, no two
nodes (title bars and badges included) overlapping, every link running left to right and behind no
other node. Then, on each Empty Latent node, picking another preset shows its size in the width and
height widgets; and on an Empty Latent node in a subgraph, its preset, width and height promoted to the
subgraph node, a preset picked there (a click, then the menu entry) shows its size in the subgraph
node's width and height, which the queued prompt then carries. A screenshot of each loaded workflow
goes to a folder under /tmp (printed). Last, the node help panel of each FlowAnime node shows its page
from web/docs/ (title, one table row per input and output, each with all its cells) without an error.

Needs: Chromium (Debian: apt-get install chromium) and the playwright package (pip install
playwright; no browser download: it drives /usr/bin/chromium). Uses the test environment's ComfyUI.

    python scripts/check_workflows_in_browser.py [--shots DIR] [--write-thumbnails] [--front-end-root DIR]

--front-end-root runs the check against another frontend than the one ComfyUI pins: the static
folder of a newer comfyui-frontend-package you installed yourself (nothing is downloaded here).

--write-thumbnails renders each loaded graph to example_workflows/<name>.jpg, the thumbnail the
template browser shows for it (it requests /api/workflow_templates/<pack folder>/<name>.jpg).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import re
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
MODULE = "FlowAnime"  # the pack's folder name under custom_nodes/: the template browser's category
VIEWPORT = {"width": 1600, "height": 1000}
THUMBNAIL_SIZE = (800, 600)  # the template cards are about square; the graph is letterboxed into it
TITLE_AND_BADGE = 50  # a node's title bar and the badge above it, over its pos


def load_builder():
    """The workflow generator: its layout geometry (spline, node_rect) is the one checked here."""
    spec = importlib.util.spec_from_file_location("build_example_workflows", PACK_ROOT / "scripts" / "build_example_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_comfyui(comfy: Path, base: Path, port: int, python: str, front_end_root: Path | None = None):
    """front_end_root: another frontend's static folder (ComfyUI's --front-end-root), e.g. a newer
    comfyui-frontend-package's comfyui_frontend_package/static."""
    log = open(base / "comfyui.log", "w")
    extra = ["--front-end-root", str(front_end_root)] if front_end_root else []
    proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                             "--base-directory", str(base), *extra], cwd=comfy, stdout=log, stderr=subprocess.STDOUT)
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
    (base / "custom_nodes" / MODULE).symlink_to(PACK_ROOT, target_is_directory=True)
    for folder in set(kit.MODEL_FOLDERS.values()):
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
    for wf in workflows.values():  # stand-in files so the loaders' lists hold the names used
        for node in wf["nodes"]:
            for value in node.get("widgets_values", []):
                if isinstance(value, str) and value.endswith(".safetensors"):
                    for folder in set(kit.MODEL_FOLDERS.values()):
                        (base / "models" / folder / value).write_bytes(b"")


def open_from_template_browser(page, title: str) -> None:
    """Sidebar Templates button (unless ComfyUI already opened the dialog, as on a first start),
    Custom Nodes -> FlowAnime (newer frontends: Extensions -> FlowAnime), the workflow's card; returns
    when the dialog has closed."""
    dialog = page.locator("[role=dialog]")  # a PrimeVue dialog in 1.27.10, another kind in newer frontends
    if not dialog.count():
        page.locator(".templates-tab-button").first.click()
    dialog.first.wait_for(state="visible", timeout=30000)
    dialog.get_by_text(MODULE, exact=True).first.click()
    dialog.get_by_text(title, exact=True).first.click()
    page.wait_for_function("() => !document.querySelector('[role=dialog]')", timeout=30000)
    page.wait_for_timeout(1500)  # the editor lays out the nodes and draws the widgets


EDITOR_GEOMETRY = """() => {
  const graph = window.app.graph;
  const nodes = graph._nodes.map(n => {
    const min = n.computeSize();
    const widgets = (n.widgets || []).filter(w => !w.hidden && (n.isWidgetVisible ? n.isWidgetVisible(w) : true))
      .map(w => ({name: w.name, y: w.y ?? w.last_y ?? 0,
                  height: w.computedHeight ?? (w.computeSize ? w.computeSize(n.size[0])[1] : window.LiteGraph.NODE_WIDGET_HEIGHT)}));
    return {id: n.id, type: n.type, title: n.title, pos: [n.pos[0], n.pos[1]], size: [n.size[0], n.size[1]],
            min: [min[0], min[1]], widgets};
  });
  const all = graph.links instanceof Map ? [...graph.links.values()] : Object.values(graph.links || {});
  const links = all.filter(Boolean).map(l => {
    const src = graph.getNodeById(l.origin_id), dst = graph.getNodeById(l.target_id);
    return {src: l.origin_id, dst: l.target_id, start: [...src.getOutputPos(l.origin_slot)],
            end: [...dst.getInputPos(l.target_slot)]};
  });
  return {nodes, links};
}"""


def editor_layout_problems(geometry: dict, builder) -> list[str]:
    """The layout as the editor computed it: sizes, widgets inside their nodes, overlaps, link routes."""
    problems = []
    nodes = geometry["nodes"]
    for n in nodes:
        name = f"{n['id']} {n['title'] or n['type']}"
        if n["size"][0] < n["min"][0] - 0.5 or n["size"][1] < n["min"][1] - 0.5:
            problems.append(f"node {name} is {n['size']}, smaller than the {[round(v) for v in n['min']]} it needs")
        for w in n["widgets"]:
            if w["y"] + w["height"] > n["size"][1] + 0.5:
                problems.append(f"widget {w['name']} of node {name} reaches below the node")
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if builder.overlaps(builder.node_rect(a), builder.node_rect(b)):
                problems.append(f"nodes {a['id']} {a['title']} and {b['id']} {b['title']} overlap")
    by_id = {n["id"]: n for n in nodes}
    for link in geometry["links"]:
        source, target = by_id[link["src"]]["title"], by_id[link["dst"]]["title"]
        if link["end"][0] <= link["start"][0]:
            problems.append(f"link {source} -> {target} runs backwards")
            continue
        for other in nodes:
            if other["id"] in (link["src"], link["dst"]):
                continue
            rect = builder.node_rect(other)
            if any(rect[0] < x < rect[2] and rect[1] < y < rect[3] for x, y in builder.spline(link["start"], link["end"])):
                problems.append(f"link {source} -> {target} runs behind node {other['id']} {other['title']}")
    return problems


def write_thumbnail(page, path: Path, workflow_text: str) -> int:
    """The loaded graph drawn at 75 % (below about 60 % the editor drops text and widgets), cropped
    clear of the menus, letterboxed into a small JPEG. Its comment holds the workflow file's SHA-256,
    so the browser test can tell a stale thumbnail."""
    from PIL import Image

    scale, margin = 0.75, {"left": 100, "top": 110, "right": 40, "bottom": 280}  # menus, minimap, zoom buttons
    left, top, right, bottom = page.evaluate(
        "h => { const n = window.app.graph._nodes; return [Math.min(...n.map(n => n.pos[0])) - 20, "
        "Math.min(...n.map(n => n.pos[1])) - h, Math.max(...n.map(n => n.pos[0] + n.size[0])) + 20, "
        "Math.max(...n.map(n => n.pos[1] + n.size[1])) + 20]; }", TITLE_AND_BADGE)
    width, height = int((right - left) * scale), int((bottom - top) * scale)
    page.set_viewport_size({"width": width + margin["left"] + margin["right"], "height": height + margin["top"] + margin["bottom"]})
    page.wait_for_timeout(500)
    page.evaluate("""([scale, left, top, x, y]) => {
        const c = window.app.canvas, r = c.canvas.getBoundingClientRect();
        c.ds.scale = scale; c.ds.offset[0] = (x - r.left) / scale - left; c.ds.offset[1] = (y - r.top) / scale - top;
        c.setDirty(true, true); }""", [scale, left, top, margin["left"], margin["top"]])
    page.wait_for_timeout(1000)
    shot = page.screenshot(clip={"x": margin["left"], "y": margin["top"], "width": width, "height": height})
    page.set_viewport_size(VIEWPORT)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    background = image.getpixel((2, 2))
    image.thumbnail(THUMBNAIL_SIZE, Image.LANCZOS)
    canvas = Image.new("RGB", THUMBNAIL_SIZE, background)
    canvas.paste(image, ((THUMBNAIL_SIZE[0] - image.width) // 2, (THUMBNAIL_SIZE[1] - image.height) // 2))
    canvas.save(path, "JPEG", quality=85, optimize=True, comment=thumbnail_comment(workflow_text).encode())
    return path.stat().st_size


def thumbnail_comment(workflow_text: str) -> str:
    return "flowanime-workflow-sha256:" + hashlib.sha256(workflow_text.encode()).hexdigest()


# Picks another preset on each Empty Latent node as the combo menu does (value, then the widget's
# callback) and reads the size widgets back.
PICK_PRESET = """(preset) => window.app.graph._nodes.filter(n => n.type === "FlowAnimeEmptyLatentForModel").map(n => {
    const widget = name => n.widgets.find(w => w.name === name);
    const combo = widget("preset");
    combo.value = preset;
    combo.callback?.(combo.value);
    return [n.id, widget("width").value, widget("height").value];
})"""


def preset_size_problems(page, preset: str = "1216x832 (19:13 landscape)") -> list[str]:
    """After a preset is picked, the width and height widgets show its size (web/flowanime.js)."""
    return [f"Empty Latent node {node_id}: picking {preset!r} left width/height at {width}x{height}"
            for node_id, width, height in page.evaluate(PICK_PRESET, preset) if (width, height) != (1216, 832)]


# An Empty Latent node in a subgraph, its preset, width and height promoted to the subgraph's inputs (as
# the editor promotes a widget: a subgraph input linked to the widget's slot); returns the subgraph node's
# preset widget's place on the page, to click.
PROMOTE_LATENT = """async () => {
    window.app.graph.clear();
    const inner = window.LiteGraph.createNode("FlowAnimeEmptyLatentForModel");
    inner.pos = [100, 100];
    window.app.graph.add(inner);
    window.app.canvas.deselectAll();
    window.app.canvas.select(inner);
    await window.app.extensionManager.command.execute("Comfy.Graph.ConvertToSubgraph");
    const host = window.app.graph.nodes[0], sg = host.subgraph;
    const latent = [...sg.nodes][0];
    for (const name of ["preset", "width", "height"]) {
        const slot = latent.inputs.findIndex(i => i.name === name || i.widget?.name === name);
        sg.addInput(name, String(latent.inputs[slot].type)).connect(latent.inputs[slot], latent);
    }
    host.pos = [100, 100];
    host.setSize([360, Math.max(host.size[1], host.computeSize()[1])]);
    window.app.canvas.ds.offset = [0, 0];
    window.app.canvas.ds.scale = 1;
    window.app.graph.setDirtyCanvas(true, true);
    window.faHost = host;
    window.faInner = latent;
}"""
COMBO_AT = """() => {
    const node = window.faHost, w = node.widgets.find(w => w.name === "preset");
    const [x, y] = window.app.canvas.ds.convertOffsetToCanvas(
        [node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + window.LiteGraph.NODE_WIDGET_HEIGHT / 2]);
    const r = window.app.canvas.canvas.getBoundingClientRect();
    return [r.left + x, r.top + y];
}"""
SHOWN_AND_QUEUED = """async () => {
    const values = node => ["preset", "width", "height"].map(n => node.widgets.find(w => w.name === n)?.value);
    const queued = Object.values((await window.app.graphToPrompt()).output)
        .filter(v => v.class_type === "FlowAnimeEmptyLatentForModel").map(v => [v.inputs.preset, v.inputs.width, v.inputs.height]);
    return {host: values(window.faHost), inner: values(window.faInner), queued};
}"""


def promoted_preset_problems(page) -> list[str]:
    """A preset picked (a click on the combo, then its menu entry) on a subgraph node whose Empty Latent
    widgets are promoted shows its size in the subgraph node's width and height, and the prompt queued
    is what the node shows; `custom` then starts from that size."""
    page.evaluate(PROMOTE_LATENT)
    page.wait_for_timeout(800)
    problems = []
    picks = [("640x1536 (5:12 portrait)", [640, 1536]), ("custom", [640, 1536])]
    for entry, size in picks:
        x, y = page.evaluate(COMBO_AT)
        page.mouse.click(x, y)
        menu = page.locator(".litecontextmenu .litemenu-entry", has_text=entry)
        try:
            menu.first.wait_for(state="visible", timeout=5000)
        except Exception:  # noqa: BLE001 - reported
            return [f"subgraph node: clicking its promoted preset opened no menu with {entry!r}"]
        menu.first.click()
        page.wait_for_timeout(500)
        got = page.evaluate(SHOWN_AND_QUEUED)
        want = [entry, *size]
        if got["host"] != want or got["queued"] != [want]:
            problems.append(f"subgraph node: after picking {entry!r} on its promoted preset it shows {got['host']}"
                            f" (inner node {got['inner']}) and queues {got['queued']}, expected {want}")
        print(f"{'OK  ' if not problems else 'FAIL'} preset {entry!r} picked on a subgraph node: shows {got['host']},"
              f" queues {got['queued']}")
    return problems


# What a newer frontend asks of the 0.3.64 server and does not find (templates' logo index): not ours.
NEWER_FRONTEND_MISSING = ("/templates/index_logo.json",)
OURS = "[from FlowAnime's extension] "
# console.warn / console.error tagged when called from our extension's file (its URL in the stack)
NEWER_FRONTEND_TAGGING = """(() => {
  for (const kind of ["warn", "error"]) {
    const original = console[kind];
    console[kind] = function (...args) {
      if (String(new Error().stack).includes("/extensions/MODULE/")) args[0] = "OURS" + String(args[0]);
      return original.apply(console, args);
    };
  }
})()""".replace("MODULE", MODULE).replace("OURS", OURS)


# The help panel as the node library's help button opens it (frontend 1.27.10: the Pinia stores
# nodeDef and nodeHelp; NodeHelpService fetches /extensions/<pack folder>/docs/<node id>.md and renders it).
OPEN_NODE_HELP = """async (name) => {
  const pinia = document.querySelector('#vue-app').__vue_app__.config.globalProperties.$pinia;
  const help = pinia._s.get('nodeHelp');
  help.openHelp(pinia._s.get('nodeDef').nodeDefsByName[name]);
  for (let i = 0; i < 200 && (help.isLoading || !help.renderedHelpHtml); i++) await new Promise(r => setTimeout(r, 50));
  const page = new DOMParser().parseFromString(help.renderedHelpHtml, 'text/html');
  const tables = [...page.querySelectorAll('table')].map(t => [...t.querySelectorAll('tbody tr')].map(r => r.cells.length));
  help.closeHelp();
  return {error: help.error, title: page.querySelector('h1')?.textContent, tables};
}"""


LOCALE_PAGE = re.compile(r"/extensions/[^/]+/docs/FlowAnime\w+/en\.md$")


def node_help_problems(page, node_classes: dict) -> list[str]:
    """Each FlowAnime node's help page: its title, and one full row per input and per output."""
    problems = []
    for name, node in node_classes.items():
        if not name.startswith("FlowAnime"):
            continue
        shown = page.evaluate(OPEN_NODE_HELP, name)
        written = (PACK_ROOT / "web" / "docs" / f"{name}.md").read_text(encoding="utf-8").splitlines()[0]
        inputs = sum(len(section) for section in node.INPUT_TYPES().values())
        expected = {"error": None, "title": written.removeprefix("# "),
                    "tables": [[4] * inputs, [3] * len(node.RETURN_TYPES)]}
        if shown["error"] is not None or shown["title"] != expected["title"] or shown["tables"][-2:] != expected["tables"]:
            problems.append(f"the help page of {name} shows {shown}, expected {expected}")
    return problems


def check(port: int, workflows: dict, node_classes: dict, shots_dir: Path | None = None,
          thumbnails_dir: Path | None = None, newer_frontend: bool = False) -> list[str]:
    from playwright.sync_api import sync_playwright

    builder = load_builder()
    problems = []
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        events = []
        if newer_frontend:
            # A newer frontend on the 0.3.64 server logs its own deprecations and misses (litegraph's
            # configure reads input.link): count only what our extension's code logs, by its stack.
            page.add_init_script(NEWER_FRONTEND_TAGGING)
        page.on("console", lambda msg: events.append(f"console {msg.type}: {msg.text.splitlines()[0]}")
                if msg.type in ("error", "warning") and (not newer_frontend or msg.text.startswith(OURS)) else None)
        page.on("response", lambda r: events.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        page.on("pageerror", lambda e: events.append(f"page error: {e}"))
        for name, wf in workflows.items():
            title = name[: -len(".json")]
            # a fresh editor per workflow, so one file's dialogs cannot be blamed on the next; what a
            # fresh profile logs at start (no user.css, no saved workflows yet) is not ours
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
            page.wait_for_timeout(1000)
            startup = [e for e in events if MODULE.lower() in e.lower()]
            events.clear()
            found = [f"at start-up: {e}" for e in startup]
            try:
                open_from_template_browser(page, title)
            except Exception as e:  # noqa: BLE001 - reported, the other workflows still run
                found.append(f"could not open it from the template browser: {str(e).splitlines()[0]}")
            if newer_frontend:
                events[:] = [e for e in events if not e.endswith(NEWER_FRONTEND_MISSING)]
            if events:
                found.append(f"console / network while opening it: {events[:6]}")
            loaded = page.evaluate("() => window.app.graph._nodes.length")
            if loaded != len(wf["nodes"]):
                found.append(f"the editor holds {loaded} nodes, the file {len(wf['nodes'])}")
            unknown = page.evaluate(
                "types => types.filter(t => !(t in window.LiteGraph.registered_node_types))",
                sorted({n["type"] for n in wf["nodes"]}))
            if unknown:
                found.append(f"node types unknown to the editor: {unknown}")
            body = page.evaluate("() => document.body.innerText")
            if "missing" in body.lower():
                found.append("the editor reports missing nodes or models")
            found += editor_layout_problems(page.evaluate(EDITOR_GEOMETRY), builder)
            theirs = page.evaluate("async () => (await window.app.graphToPrompt()).output")
            ours = kit.ui_to_api(wf, node_classes)
            theirs = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in theirs.items()}
            if theirs != ours:
                diff = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
                found.append(f"graphToPrompt differs from ui_to_api at nodes {diff}: "
                             f"{[(theirs.get(k), ours.get(k)) for k in diff[:2]]}")
            if shots_dir is not None:
                page.screenshot(path=str(shots_dir / f"{title}.png"))
            if thumbnails_dir is not None:
                text = (PACK_ROOT / "example_workflows" / name).read_text(encoding="utf-8")
                size = write_thumbnail(page, thumbnails_dir / f"{title}.jpg", text)
                print(f"     thumbnail {title}.jpg: {size // 1024} KiB")
            found += preset_size_problems(page)
            print(f"{'OK  ' if not found else 'FAIL'} {name}" + "".join(f"\n     - {f}" for f in found))
            problems += found
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
        page.wait_for_timeout(1000)
        page.keyboard.press("Escape")  # any dialog left open
        events.clear()
        try:
            found = promoted_preset_problems(page)
        except Exception as e:  # noqa: BLE001 - reported with the rest
            found = [f"could not check the preset on a subgraph node: {str(e).splitlines()[0]}"]
        found += [f"console / network while picking a preset on a subgraph node: {e}" for e in events]
        problems += found
        events.clear()
        try:
            found = node_help_problems(page, node_classes)
        except Exception as e:  # noqa: BLE001 - reported with the rest
            found = [f"could not open the node help panel: {str(e).splitlines()[0]}"]
        # The panel asks for the page in the user's language first (docs/<id>/en.md): a 404 it expects,
        # which the console also logs, without its address, as a resource that failed to load.
        locale_misses = [e for e in events if e.startswith("HTTP 404") and LOCALE_PAGE.search(e)]
        others = [e for e in events if e not in locale_misses]
        failed_loads = [e for e in others if "Failed to load resource" in e]
        others = [e for e in others if e not in failed_loads] + failed_loads[len(locale_misses):]
        found += [f"console / network while opening the help pages: {e}" for e in others]
        print(f"{'OK  ' if not found else 'FAIL'} node help pages" + "".join(f"\n     - {f}" for f in found))
        problems += found
        browser.close()
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", type=Path, default=None, help="folder for the screenshots (default: a new one under /tmp)")
    parser.add_argument("--write-thumbnails", action="store_true", help="write example_workflows/<name>.jpg")
    parser.add_argument("--front-end-root", type=Path, default=None,
                        help="another frontend's static folder (default: the one the running ComfyUI pins)")
    args = parser.parse_args()
    comfy = kit.find_comfyui()
    if comfy is None:
        sys.exit(kit.NO_COMFYUI_REASON)
    workflows = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((PACK_ROOT / "example_workflows").glob("*.json"))}
    base = Path(tempfile.mkdtemp(prefix="flowanime-browser-"))
    shots = args.shots or Path(tempfile.mkdtemp(prefix="flowanime-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    prepare_base(base, workflows)
    harness = kit.ComfyHarness.start(comfy, PACK_ROOT, Path(tempfile.mkdtemp()))
    port = free_port()
    server = start_comfyui(comfy, base, port, os.environ.get("FLOWANIME_PYTHON", sys.executable), args.front_end_root)
    try:
        problems = check(port, workflows, harness.nodes.NODE_CLASS_MAPPINGS, shots,
                         PACK_ROOT / "example_workflows" if args.write_thumbnails else None, args.front_end_root is not None)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{len(workflows)} workflows checked in {shutil.which('chromium') or 'chromium'}: "
          f"{'no problems' if not problems else f'{len(problems)} problems'}; screenshots in {shots}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
