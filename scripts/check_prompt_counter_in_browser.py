"""The live token/chunk counter and the reports on the nodes, in ComfyUI's real graph editor (headless Chromium).

1. Adds "CLIP Text Encode with BREAK" to an empty graph, types each prompt of a table into its text
   box as a user does, waits for the counter under it, and compares what it shows (tokens per chunk,
   BREAK segment, tokens moved on by comma backtracking) with the encoder's own chunking of the same
   prompt on a real CLIP (given by the caller).
2. Runs a small graph (CLIPLoader -> encoder -> Preview Any; normaliser -> Preview Any) and checks that
   the encoder's chunk report and the normaliser's tag report appear on the nodes.
   The reports come back on the nodes the editor rebuilds after a workflow-tab round trip and an undo.
3. Answers the counter's requests as a server without its route does (405): one request, then the
   message on the node.
4. A node deleted right after an edit sends no count (neither the pending one nor a busy answer's retry);
   a group node (frontend 1.27.10) sends none for its hidden inner nodes when the prompt is queued.
Screenshots go to a temporary folder (printed), never into the repository.

Needs Chromium (Debian: apt-get install chromium) and the playwright package; uses the test
environment's ComfyUI. Run through tests/test_comfy_browser_prompt.py, or directly:

    python scripts/check_prompt_counter_in_browser.py [--front-end-root DIR [--vue-nodes]]

--front-end-root: another frontend's static folder (a newer comfyui-frontend-package's
comfyui_frontend_package/static, installed yourself); --vue-nodes turns on the editor's Vue node
renderer ("Nodes 2.0", Comfy.VueNodes.Enabled), which draws DOM widgets from frontend 1.3x on; the
text is then typed into the Vue node's text box.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tests"))

import flowanime_testkit as kit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_workflows_in_browser import CHROMIUM_FLAGS, NEWER_FRONTEND_TAGGING, OURS, free_port, start_comfyui  # noqa: E402

ENCODER = "FlowAnimeCLIPTextEncodeBreak"
NORMALIZER = "FlowAnimeBooruPromptNormalizer"

_LONG_TAGS = ", ".join(f"{a} {b}" for a in ("long", "silver", "blue", "pleated", "red") for b in
                       ("hair", "eyes", "school uniform", "skirt", "ribbon", "thighhighs", "bow"))
# (prompt, comma_backtrack): short, BREAK segments, backtracking moves, a hard cut, weights and escapes
PROMPTS = [
    ("1girl, solo, long hair", 20),
    ("by wlop, by kantoku BREAK 1girl, solo, long hair BREAK smile", 20),
    (_LONG_TAGS + ", " + _LONG_TAGS, 20),
    (_LONG_TAGS + ", " + _LONG_TAGS, 0),
    ("(masterpiece:1.2), karin \\(blue archive\\), (red eyes), " + _LONG_TAGS, 20),
    ("a girl stands in the rain, holding an umbrella. " * 8, 20),
    # comments, which the frontend drops from a dynamicPrompts box when the prompt is queued
    ("1girl, solo // the subject\nlong hair, /* hair, eyes,\nand more */ smile, http://x /* open", 20),
    # braces, which the frontend resolves when the prompt is queued: one-option blocks lose their braces,
    # \{ \} \| lose their backslash, a block of choices gives one option (the counter counts the first)
    ("{{masterpiece}}, {best quality}, 1girl, \\{not a choice\\}, " + _LONG_TAGS, 20),
    ("1girl, {smiling|grinning, open mouth}, {{red|blue} eyes|closed eyes}, " + _LONG_TAGS, 20),
]
# What the frontend's processDynamicPrompt makes of the prompts above with braces (the first option of
# each choice, as the counter counts them); the others lose their comments only.
QUEUED = {
    PROMPTS[-2][0]: "masterpiece, best quality, 1girl, {not a choice}, " + _LONG_TAGS,
    PROMPTS[-1][0]: "1girl, smiling, red eyes, " + _LONG_TAGS,
}
TYPED = "1girl, solo, long hair"  # typed key by key; the others are pasted (fill)
NORMALIZER_PROMPT = "blueeyes, long_hair, love_live!, not_a_real_tag_xyz, by wlop // note_to_self"


def as_queued(prompt: str) -> str:
    """What the node gets of one of the fixed prompts above: QUEUED's text, or the prompt without its
    comments (the frontend's comment regex)."""
    import re

    return QUEUED.get(prompt) or re.sub(r"/\*[\s\S]*?\*/|//.*", "", prompt)


def prepare_base(base: Path, clip_file: Path, vue_nodes: bool = False) -> None:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "user" / "default").mkdir(parents=True)
    # a returning user: no first-run template dialog over the graph
    settings = {"Comfy.TutorialCompleted": True, **({"Comfy.VueNodes.Enabled": True} if vue_nodes else {})}
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(settings), encoding="utf-8")
    (base / "custom_nodes" / "FlowAnime").symlink_to(PACK_ROOT, target_is_directory=True)
    (base / "models" / "text_encoders").mkdir(parents=True)
    (base / "models" / "text_encoders" / kit.CLIP_L).symlink_to(clip_file)


def old_style_workflow() -> dict:
    """The RouWei example as saved before the normaliser's resolve_aliases / tag_list_csv / preset widgets
    and tag_report output existed (four widget values, one output)."""
    path = PACK_ROOT / "example_workflows" / "RouWei 0.8 vpred (SDXL, BREAK).json"
    workflow = json.loads(path.read_text(encoding="utf-8"))
    for node in workflow["nodes"]:
        if node["type"] == NORMALIZER:
            node["widgets_values"] = node["widgets_values"][:4]
            node["outputs"] = node["outputs"][:1]
    return workflow


ROUTE = "/flowanime/prompt_tokens"


def removal_problems(page, requests: list) -> list[str]:
    """A node deleted right after an edit sends no count request: neither the debounced one pending (350 ms)
    nor the retry a busy answer schedules (1.5 s)."""
    problems = []
    add_and_type = """async ([enc, text]) => {
        const g = window.app.graph;
        g.clear();
        const n = window.LiteGraph.createNode(enc);
        n.pos = [80, 80];
        g.add(n);
        const box = n.widgets.find(w => w.name === "text");
        const el = box.element ?? box.inputEl;
        for (let i = 0; i < 100 && n.flowanimeCounter.dataset.forText === undefined; i++)
            await new Promise(r => setTimeout(r, 50));  // the new node's own first count
        el.value = text;
        el.dispatchEvent(new Event("input", { bubbles: true }));
        window.faRemoved = n;
    }"""
    page.evaluate(add_and_type, [ENCODER, "1girl, smile, deleted at once"])
    page.wait_for_timeout(100)
    before = len(requests)
    page.evaluate("() => window.app.graph.remove(window.faRemoved)")
    page.wait_for_timeout(1200)
    if len(requests) != before:
        problems.append(f"a node deleted 100 ms after an edit still sent {len(requests) - before} count request(s)")
    print(f"{'OK  ' if not problems else 'FAIL'} a node deleted right after an edit: "
          f"{len(requests) - before} count requests after its removal")

    # the server busy: the node would ask again 1.5 s later; deleted meanwhile, it must not
    page.route(f"**{ROUTE}", lambda route: route.fulfill(status=200, content_type="application/json",
                                                         body=json.dumps({"busy": True, "tokens": 0, "chunks": []})))
    try:
        page.evaluate(add_and_type, [ENCODER, "1girl, smile, busy server"])
        page.wait_for_function("() => window.faRemoved.flowanimeCounter.dataset.forText === '1girl, smile, busy server'",
                               timeout=10000)
        before = len(requests)
        page.evaluate("() => window.app.graph.remove(window.faRemoved)")
        page.wait_for_timeout(2500)
    finally:
        page.unroute(f"**{ROUTE}")
    retried = len(requests) - before
    if retried:
        problems.append(f"a node deleted after a busy answer still asked again {retried} time(s)")
    print(f"{'OK  ' if not retried else 'FAIL'} a node deleted after a busy answer: {retried} retries after its removal")
    return problems


def group_node_problems(page, requests: list) -> list[str]:
    """Frontend 1.27.10's group nodes: queueing the prompt sets the hidden inner nodes' text, which sent one
    count request per inner node on every Run; none now. Skipped where the frontend has no group nodes."""
    has_group_nodes = page.evaluate("""() => { const c = window.app.extensionManager.command;
        const all = c.commands ?? []; return all.some?.(x => x.id === "Comfy.GroupNode.ConvertSelectedNodesToGroupNode"); }""")
    if not has_group_nodes:
        print("     (no group nodes in this frontend: not checked)")
        return []
    page.evaluate("""async ([enc, norm]) => {
        const g = window.app.graph, L = window.LiteGraph;
        g.clear();
        const add = (type, pos, text) => { const n = L.createNode(type); n.pos = pos; g.add(n);
            n.widgets.find(w => w.name === "text").value = text; n.flowanimeSchedule(); return n; };
        const a = add(norm, [50, 100], "blue_eyes, long_hair"), b = add(enc, [500, 100], "1girl, solo");
        for (let i = 0; i < 100 && !(a.flowanimeCounter.dataset.forText && b.flowanimeCounter.dataset.forText); i++)
            await new Promise(r => setTimeout(r, 50));
        window.app.canvas.deselectAll();
        window.app.canvas.select(a);
        window.app.canvas.select(b);
        window.app.extensionManager.command.execute("Comfy.GroupNode.ConvertSelectedNodesToGroupNode");
    }""", [ENCODER, NORMALIZER])
    page.locator("[role=dialog] input").first.fill("flowanime group")  # the group node's name
    page.keyboard.press("Enter")
    page.wait_for_timeout(1500)
    grouped = page.evaluate("() => window.app.graph.nodes.map(n => n.type)")
    before = len(requests)
    for _ in range(3):
        page.evaluate("async () => { await window.app.graphToPrompt(); }")
        page.wait_for_timeout(800)
    sent = len(requests) - before
    problems = []
    if len(grouped) != 1 or not str(grouped[0]).startswith("workflow>"):
        problems.append(f"could not make a group node: the graph holds {grouped}")
    elif sent:
        problems.append(f"a group node holding the encoder and the normaliser: {sent} count requests for 3 prompts queued")
    print(f"{'OK  ' if not problems else 'FAIL'} a group node: {sent} count requests for 3 prompts queued")
    return problems


# How long the check holds back the answer to the run's POST /api/prompt (the run itself takes under a second).
PROMPT_ANSWER_DELAY_S = 5
REPORTS = """() => window.app.graph.nodes.filter(n => n.flowanimeCounter).map(n => [n.type, n.flowanimeReport?.textContent ?? null])"""


def reports_after_rebuild_problems(page) -> list[str]:
    """After a run, the editor rebuilds the nodes on a workflow-tab round trip and on an undo: the reports
    are shown on the new nodes again (the editor hands back the outputs it keeps for the workflow)."""
    problems = []
    before = sorted(page.evaluate(REPORTS))
    if not before or not all(report for _, report in before):
        return [f"no reports to follow through a tab switch and an undo: {before}"]
    tracker = "() => window.app.extensionManager.workflow.activeWorkflow?.changeTracker?.checkState?.()"
    page.evaluate(tracker)  # the graph built by script: the tab's saved state holds it
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_timeout(1500)
    def compare(what: str) -> None:
        # the rebuilt nodes get the kept outputs after the graph is built, later on a loaded machine: wait up to 30 s
        for _ in range(120):
            page.wait_for_timeout(250)
            after = sorted(page.evaluate(REPORTS))
            if after == before:
                break
        if after != before:
            problems.append(f"after {what} the reports are {after}, before {before}")
        print(f"{'OK  ' if after == before else 'FAIL'} the reports after {what}: {[(t, (r or '')[:25]) for t, r in after]}")

    page.evaluate("() => window.app.extensionManager.command.execute('Workspace.PreviousOpenedWorkflow')")
    compare("a workflow-tab round trip")
    page.evaluate("() => { const n = window.app.graph.nodes.find(n => n.flowanimeCounter); n.pos = [n.pos[0] + 10, n.pos[1]]; }")
    page.evaluate(tracker)
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Undo')")
    compare("an undo")
    # the nodes the later checks use are the rebuilt ones
    page.evaluate("""([enc, norm]) => { window.faEncoder = window.app.graph.nodes.find(n => n.type === enc);
        window.faNormalizer = window.app.graph.nodes.find(n => n.type === norm); }""", [ENCODER, NORMALIZER])
    return problems


def _shown(chunks) -> list:
    return [(c["tokens"], c["segment"], c["moved"]) for c in chunks]


def check(port: int, expected_chunks, expected_report: str, shots: Path, vue_nodes: bool = False,
          newer_frontend: bool = False) -> list[str]:
    """expected_chunks(prompt, backtrack) -> the encoder's chunk list; expected_report: the encoder's report
    of the graph's prompt. Returns the problems found."""
    from playwright.sync_api import sync_playwright

    problems = []
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        console = []
        if newer_frontend:  # only what our extension's code logs counts (check_workflows_in_browser says why)
            page.add_init_script(NEWER_FRONTEND_TAGGING)
        page.on("console", lambda msg: console.append((msg.type, msg.text))
                if not newer_frontend or msg.text.startswith(OURS) else None)
        requests = []  # the counter's requests
        page.on("request", lambda r: requests.append(r.url) if r.url.endswith(ROUTE) else None)
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
        page.wait_for_timeout(1000)
        page.keyboard.press("Escape")  # any dialog left open
        node_id = page.evaluate("""([enc]) => {
            window.app.graph.clear();
            const n = window.LiteGraph.createNode(enc);
            n.pos = [80, 80];
            n.size = [560, 360];
            window.app.graph.add(n);
            window.faEncoder = n;
            const textWidget = n.widgets.find(w => w.name === "text");
            (textWidget.element ?? textWidget.inputEl).id = "fa-text";
            window.app.canvas.ds.offset = [0, 0];
            window.app.canvas.ds.scale = 1;
            window.app.graph.setDirtyCanvas(true, true);
            return n.id;
        }""", [ENCODER])
        page.wait_for_timeout(1000)
        for n, (prompt, backtrack) in enumerate(PROMPTS):
            page.evaluate("b => { const w = window.faEncoder.widgets.find(w => w.name === 'comma_backtrack');"
                          " w.value = b; w.callback?.(b); }", backtrack)
            box = page.locator(f'[data-node-id="{node_id}"] textarea').first if vue_nodes else page.locator("#fa-text")
            box.fill("")
            if prompt == TYPED:
                box.press_sequentially(prompt, delay=30)
            else:
                box.fill(prompt)
            try:
                page.wait_for_function("t => window.faEncoder.flowanimeCounter.dataset.forText === t",
                                       arg=prompt, timeout=30000)
            except Exception:
                problems.append(f"prompt {n + 1}: the counter never showed a count")
                continue
            page.wait_for_timeout(600)  # a pending debounced request for the same text may still land
            shown = json.loads(page.evaluate("() => window.faEncoder.flowanimeCounter.dataset.result"))
            text_shown = page.evaluate("() => window.faEncoder.flowanimeCounter.innerText")
            want = expected_chunks(as_queued(prompt), backtrack)
            if "error" in shown or _shown(shown["chunks"]) != _shown(want):
                problems.append(f"prompt {n + 1} (backtrack {backtrack}): counter {shown.get('error') or _shown(shown['chunks'])}"
                                f" != encoder {_shown(want)}")
            elif shown["tokens"] != sum(c["tokens"] for c in want) or f"{len(want)} chunk" not in text_shown:
                problems.append(f"prompt {n + 1}: the counter's text {text_shown!r} does not match the encoder")
            elif ("first option" in text_shown) != ("|" in prompt):
                problems.append(f"prompt {n + 1}: the counter's text {text_shown!r} should say whether a choice was counted")
            print(f"{'OK  ' if not problems or not problems[-1].startswith(f'prompt {n + 1}') else 'FAIL'} "
                  f"prompt {n + 1} (backtrack {backtrack}): {' | '.join(text_shown.splitlines())}")
            if n in (1, 2):
                page.screenshot(path=str(shots / f"counter_{n + 1}.png"))

        # A workflow saved before the normaliser had its new widgets and output still loads, with defaults.
        old = old_style_workflow()
        console.clear()
        page.evaluate("wf => window.app.loadGraphData(wf)", old)
        page.wait_for_timeout(1500)
        api_prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
        loaded = [v["inputs"] for v in api_prompt.values() if v["class_type"] == NORMALIZER]
        if not loaded or {k: loaded[0].get(k) for k in ("resolve_aliases", "tag_list_csv", "preset")} != \
                {"resolve_aliases": False, "tag_list_csv": "", "preset": "custom"}:
            problems.append(f"an old workflow's normaliser did not get the new widgets' defaults: {loaded}")
        noisy = [text for kind, text in console if kind in ("warning", "error") and "ERR_NAME_NOT_RESOLVED" not in text]
        if noisy:
            problems.append(f"console while loading an old workflow: {noisy[:5]}")
        print(f"{'OK  ' if not problems or 'old workflow' not in problems[-1] else 'FAIL'} a workflow saved before "
              f"the new options loads: {loaded and {k: loaded[0][k] for k in ('resolve_aliases', 'tag_list_csv', 'preset')}}")

        # A new Calibrated Schedule node keeps its calibration seed between runs (fixed, not the editor's
        # randomize for a widget named seed); a saved workflow's value still wins.
        controls = page.evaluate("""() => {
            const node = window.LiteGraph.createNode("FlowAnimeCalibratedSchedule");
            window.app.graph.add(node);
            const control = node.widgets.find(w => w.name === "control_after_generate");
            const fresh = control?.value;
            node.configure({ ...node.serialize(), widgets_values: node.widgets.map(w =>
                w.name === "control_after_generate" ? "increment" : w.value) });
            const loaded = node.widgets.find(w => w.name === "control_after_generate")?.value;
            window.app.graph.remove(node);
            return [fresh, loaded];
        }""")
        if controls != ["fixed", "increment"]:
            problems.append(f"Calibrated Schedule's seed control: new node {controls[0]!r} (want 'fixed'), "
                            f"from a saved workflow {controls[1]!r} (want the saved 'increment')")
        print(f"{'OK  ' if not problems or 'seed control' not in problems[-1] else 'FAIL'} Calibrated Schedule's "
              f"seed control: new {controls[0]}, loaded {controls[1]}")

        problems += removal_problems(page, requests)
        problems += group_node_problems(page, requests)

        # A run: the encoder's chunk report and the normaliser's tag report appear on the nodes.
        graph_prompt = PROMPTS[1][0]
        page.evaluate("""([enc, norm, clip, text, ntext]) => {
            const g = window.app.graph, L = window.LiteGraph;
            g.clear();
            const add = (type, pos) => { const n = L.createNode(type); n.pos = pos; g.add(n); return n; };
            const loader = add("CLIPLoader", [30, 60]);
            loader.widgets.find(w => w.name === "clip_name").value = clip;
            loader.widgets.find(w => w.name === "type").value = "stable_diffusion";
            const encoder = add(enc, [380, 60]);
            encoder.size = [520, 300];
            encoder.widgets.find(w => w.name === "text").value = text;
            const preview = add("PreviewAny", [960, 60]);
            loader.connect(0, encoder, 0);
            encoder.connect(1, preview, 0);
            const normalizer = add(norm, [380, 480]);
            normalizer.size = [520, 380];
            normalizer.widgets.find(w => w.name === "text").value = ntext;
            const preview2 = add("PreviewAny", [960, 480]);
            normalizer.connect(1, preview2, 0);
            window.faEncoder = encoder;
            window.faNormalizer = normalizer;
            g.setDirtyCanvas(true, true);
        }""", [ENCODER, NORMALIZER, kit.CLIP_L, graph_prompt, NORMALIZER_PROMPT])
        page.wait_for_timeout(1500)
        console.clear()

        # The queue's answer held back until the run is done, as a loaded machine may deliver it: the editor
        # then gets the nodes' outputs before it knows which workflow queued them (reports_after_rebuild_problems)
        def answer_after_the_run(route):
            response = route.fetch()
            time.sleep(PROMPT_ANSWER_DELAY_S)
            route.fulfill(response=response)

        page.route("**/api/prompt", lambda route: answer_after_the_run(route) if route.request.method == "POST"
                   else route.continue_())
        page.evaluate("() => window.app.queuePrompt(0, 1)")
        mark = len(problems)  # each check below says OK or FAIL for its own problems
        try:
            page.wait_for_function("() => window.faEncoder.flowanimeReport && window.faNormalizer.flowanimeReport"
                                   " && window.faEncoder.flowanimeReport.textContent.length > 0", timeout=180000)
        except Exception:
            problems.append("after the run, no report appeared on the nodes")
        else:
            page.wait_for_timeout(1000)
            shown = page.evaluate("() => window.faEncoder.flowanimeReport.innerText")
            if shown.strip() != expected_report.strip():
                problems.append(f"the chunk report on the node differs from the encoder's: {shown!r} != {expected_report!r}")
            tag_report = page.evaluate("() => window.faNormalizer.flowanimeReport.innerText")
            for needed in ("blueeyes", "unknown (1): not a real tag xyz", "love live!"):
                if needed not in tag_report:
                    problems.append(f"the tag report on the normaliser lacks {needed!r}: {tag_report!r}")
            if "note" in tag_report:  # the box's // comment reached the node
                problems.append(f"the normaliser got its text's comment: {tag_report!r}")
            visible = page.evaluate("""() => [window.faEncoder, window.faNormalizer].map(n => {
                const r = n.flowanimeReport.getBoundingClientRect();
                return r.width > 100 && r.height > 40 && getComputedStyle(n.flowanimeReport).display !== 'none'; })""")
            if not all(visible):
                problems.append(f"a report panel is not visible on its node: {visible}")
            print(f"{'OK  ' if len(problems) == mark else 'FAIL'} reports on the nodes after a run:\n{shown}\n{tag_report}")
        page.unroute("**/api/prompt")
        page.screenshot(path=str(shots / "reports_after_run.png"))
        problems += reports_after_rebuild_problems(page)

        # The encoder's text fed by the normaliser: the widget's text is not what the encoder reads, so
        # the counter says so instead of counting it; unlinked, it counts the widget again.
        mark = len(problems)
        page.evaluate("""() => {
            const enc = window.faEncoder, slot = enc.inputs.findIndex(i => i.name === "text" || i.widget?.name === "text");
            window.faNormalizer.connect(0, enc, slot);
        }""")
        try:
            page.wait_for_function("() => JSON.parse(window.faEncoder.flowanimeCounter.dataset.result || '{}').linked",
                                   timeout=30000)
        except Exception:
            problems.append("with its text linked, the counter did not say so: "
                            + page.evaluate("() => window.faEncoder.flowanimeCounter.innerText"))
        else:
            shown = page.evaluate("() => window.faEncoder.flowanimeCounter.innerText")
            if not shown.startswith("text comes from a linked node"):
                problems.append(f"with its text linked from the normaliser, the counter says {shown!r}")
        page.evaluate("""() => {
            const enc = window.faEncoder, slot = enc.inputs.findIndex(i => i.name === "text" || i.widget?.name === "text");
            enc.disconnectInput(slot);
        }""")
        try:
            page.wait_for_function("t => window.faEncoder.flowanimeCounter.dataset.forText === t"
                                   " && !JSON.parse(window.faEncoder.flowanimeCounter.dataset.result).linked",
                                   arg=graph_prompt, timeout=30000)
        except Exception:
            problems.append("unlinked again, the counter did not count the widget's text")
        print(f"{'OK  ' if len(problems) == mark else 'FAIL'} the counter with the text linked, then unlinked")
        noisy = [text for kind, text in console if kind == "error"]
        if noisy:
            problems.append(f"browser console errors: {noisy[:5]}")

        # A server without the route (the pack installed or updated while ComfyUI ran: new extension, old
        # Python): one clear message on the node, and no request after the first answer.
        asked = []

        def refuse(route):
            asked.append(route.request.url)
            route.fulfill(status=405, body="405: Method Not Allowed")

        mark = len(problems)
        page.route("**/flowanime/prompt_tokens", refuse)
        for typed in ("1girl, smile", "1girl, smile, solo", "1girl"):
            page.evaluate("t => { const w = window.faEncoder.widgets.find(w => w.name === 'text'); w.value = t;"
                          " w.callback?.(t); }", typed)
            page.wait_for_timeout(900)
        shown = page.evaluate("() => window.faEncoder.flowanimeCounter.innerText")
        if "restart ComfyUI" not in shown or len(asked) != 1:
            problems.append(f"without the server's route: {len(asked)} requests for three edits, shown {shown!r}")
        print(f"{'OK  ' if len(problems) == mark else 'FAIL'} a server without the counter's route: {shown}")
        mark = len(problems)
        # ComfyUI restarted with the route: the tab reconnects (no reload) and the counter counts again
        page.unroute("**/flowanime/prompt_tokens")
        page.evaluate("() => { const api = window.app.api ?? window.comfyAPI?.api?.api;"
                      " api.dispatchEvent(new CustomEvent('reconnected')); }")
        try:
            page.wait_for_function("() => !window.faEncoder.flowanimeCounter.innerText.includes('restart ComfyUI')"
                                   " && JSON.parse(window.faEncoder.flowanimeCounter.dataset.result).tokens > 0",
                                   timeout=30000)
        except Exception:
            problems.append("after the server came back with the route (reconnected), the counter did not count again: "
                            + page.evaluate("() => window.faEncoder.flowanimeCounter.innerText"))
        print(f"{'OK  ' if len(problems) == mark else 'FAIL'} the counter after a reconnect to a server with the route")
        mark = len(problems)

        # The encoder in a subgraph, its text promoted to the subgraph's input (as the editor promotes a
        # widget): typed on the subgraph node, where no counter is; the one inside says where it comes from.
        shown = page.evaluate("""async ([enc]) => {
            const g = window.app.graph;
            g.clear();
            const n = window.LiteGraph.createNode(enc);
            n.pos = [100, 100];
            g.add(n);
            window.app.canvas.deselectAll();
            window.app.canvas.select(n);
            await window.app.extensionManager.command.execute("Comfy.Graph.ConvertToSubgraph");
            const sg = window.app.graph.nodes[0].subgraph;
            const inner = [...sg.nodes][0];
            const slot = inner.inputs.findIndex(i => i.name === "text" || i.widget?.name === "text");
            sg.addInput("text", "STRING").connect(inner.inputs[slot], inner);
            inner.flowanimeSchedule?.();
            for (let i = 0; i < 100 && !JSON.parse(inner.flowanimeCounter.dataset.result || "{}").linked; i++)
                await new Promise(r => setTimeout(r, 50));
            return inner.flowanimeCounter.innerText;
        }""", [ENCODER])
        if not shown.startswith("text comes from the subgraph's input"):
            problems.append(f"with its text promoted to a subgraph input, the counter says {shown!r}")
        print(f"{'OK  ' if len(problems) == mark else 'FAIL'} the counter in a subgraph: {shown}")
        browser.close()
    return problems


def run(comfy: Path, clip_file: Path, expected_chunks, expected_report: str, python: str,
        work_dir: Path | None = None, front_end_root: Path | None = None, vue_nodes: bool = False) -> list[str]:
    """work_dir: where ComfyUI's base directory and the screenshots go (a new temporary folder if None)."""
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="flowanime-counter-"))
    base, shots = work_dir / "base", work_dir / "shots"
    shots.mkdir()
    prepare_base(base, clip_file, vue_nodes)
    port = free_port()
    server = start_comfyui(comfy, base, port, python, front_end_root)
    try:
        problems = check(port, expected_chunks, expected_report, shots, vue_nodes, front_end_root is not None)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots: {shots}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--front-end-root", type=Path, default=None,
                        help="another frontend's static folder (default: the one the running ComfyUI pins)")
    parser.add_argument("--vue-nodes", action="store_true", help="turn on the Vue node renderer (newer frontends)")
    args = parser.parse_args()
    comfy = kit.find_comfyui()
    if comfy is None:
        sys.exit(kit.NO_COMFYUI_REASON)
    harness = kit.ComfyHarness.start(comfy, PACK_ROOT, Path(tempfile.mkdtemp()))
    clip = harness.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    encoder = harness.pack_submodule("comfy_adapter.clip")

    def expected_chunks(prompt, backtrack):
        return encoder.tokenize(clip, prompt, backtrack).chunkings[0]["chunks"]

    report = encoder.tokenize(clip, PROMPTS[1][0], 20).report
    problems = run(comfy, harness.models_dir / "text_encoders" / kit.CLIP_L, expected_chunks, report,
                   os.environ.get("FLOWANIME_PYTHON", sys.executable), None, args.front_end_root, args.vue_nodes)
    print(f"{len(PROMPTS)} prompts and one run checked: {'no problems' if not problems else f'{len(problems)} problems'}")
    for problem in problems:
        print(f"  - {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
