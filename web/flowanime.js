// FlowAnime graph-editor extension.
// - Under the text of "CLIP Text Encode with BREAK" and "Booru Prompt Normalizer": a live token count and
//   where each 75-token CLIP chunk ends (BREAK segments and comma-backtracking moves included), counted
//   on the server by the pack's own chunking (POST /flowanime/prompt_tokens), as the user types.
// - After a run: the encoder's chunk report and the normaliser's tag report, shown on the node, and again
//   when the editor rebuilds the node (undo, redo, a workflow-tab switch) from the outputs it keeps (which
//   the extension fills in where the editor missed a node's).
// - Empty Latent for Model: a picked preset's size shown in its width and height widgets, on the node and
//   on a subgraph node its widgets are promoted to.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const ENCODER = "FlowAnimeCLIPTextEncodeBreak";
const NORMALIZER = "FlowAnimeBooruPromptNormalizer";
const ROUTE = "/flowanime/prompt_tokens";
const DEBOUNCE_MS = 350;
const STYLE = `
.flowanime-panel { font: 11px/1.35 monospace; color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222);
  border-radius: 4px; padding: 3px 5px; box-sizing: border-box; width: 100%; height: 100%; overflow: auto;
  white-space: pre-wrap; word-break: break-word; }
.flowanime-chunks { display: flex; flex-wrap: wrap; gap: 3px; margin-top: 2px; }
.flowanime-chunk { border: 1px solid #6a8; border-radius: 3px; padding: 0 3px; }
.flowanime-chunk.segment-start { border-left: 3px solid #d94; }
.flowanime-chunk.cut { border-color: #e55; }
.flowanime-warning { color: #f88; }
`;

function addStyle() {
  if (document.getElementById("flowanime-style")) return;
  const style = document.createElement("style");
  style.id = "flowanime-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function widgetValue(node, name, fallback) {
  const w = node.widgets?.find((x) => x.name === name);
  return w === undefined ? fallback : w.value;
}

function addPanel(node, name, height) {
  const el = document.createElement("div");
  el.className = `flowanime-panel ${name}`;
  // The Vue-node renderer (newer frontends) sizes a DOM widget by its content and never asks getHeight:
  // without a floor an empty counter folds to nothing. 20 px: the margin the canvas renderer takes off.
  el.style.minHeight = `${height - 20}px`;
  const widget = node.addDOMWidget(name, "flowanime_panel", el, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => height,
    getHeight: () => height,
  });
  widget.serialize = false; // no entry in widgets_values: saved workflows stay as they were
  return { el, widget };
}

// After a run, the node's report (output[key][0]) in a panel under its widgets.
function showReportAfterRun(nodeType, key) {
  nodeType.prototype.flowanimeShowReport = function (output) {
    const text = output?.[key]?.[0];
    if (typeof text !== "string") return;
    if (!this.flowanimeReport) {
      this.flowanimeReport = addPanel(this, "flowanime_report", 110).el;
      this.setSize([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
    }
    this.flowanimeReport.textContent = text;
    this.setDirtyCanvas(true, true);
  };
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output) {
    onExecuted?.apply(this, arguments);
    this.flowanimeShowReport(output);
  };
}

// The graphs of the open workflow: the root (app.graph, also while a subgraph is shown) and the subgraph
// definitions it holds (frontend 1.27 on).
function allGraphs() {
  return [app.graph, ...(app.graph?.subgraphs?.values?.() ?? [])].filter(Boolean);
}

function allNodes() {
  return allGraphs().flatMap((graph) => graph.nodes ?? graph._nodes ?? []);
}

// The node an output key of app.nodeOutputs names: its id at the root, "<subgraph id>:<id>" (a node
// locator, frontends 1.27 on) or "<subgraph node id>:...:<id>" (an execution id, which 1.27.10's
// per-workflow store keeps).
function nodeForOutput(key) {
  const parts = String(key).split(":");
  const subgraph = parts.length === 2 ? app.graph?.subgraphs?.get?.(parts[0]) : undefined;
  if (subgraph) return subgraph.getNodeById(parts[1]);
  let graph = app.graph, node = null;
  for (const id of parts) {
    node = graph?.getNodeById?.(id) ?? null;
    graph = node?.subgraph;
  }
  return node;
}

function renderCount(el, data, text) {
  el.dataset.result = JSON.stringify(data);
  el.dataset.forText = text ?? ""; // which text this count is of (the browser test waits on it)
  el.replaceChildren();
  if (data.error) {
    el.textContent = `counter: ${data.error}`;
    return;
  }
  if (data.linked) {
    el.textContent = (data.linked === "subgraph" ? "text comes from the subgraph's input" : "text comes from a linked node") +
      ": its tokens and chunks are reported on this node after a run";
    return;
  }
  const chunks = data.chunks || [];
  const head = document.createElement("div");
  const segments = new Set(chunks.map((c) => c.segment)).size;
  head.textContent = `${data.tokens} tokens · ${chunks.length} chunk${chunks.length === 1 ? "" : "s"}` +
    (segments > 1 ? ` · ${segments} BREAK segments` : "") +
    (data.choices ? " · with the first option of each {a|b}" : "");
  el.appendChild(head);
  const row = document.createElement("div");
  row.className = "flowanime-chunks";
  chunks.forEach((c, i) => {
    const pill = document.createElement("span");
    pill.className = "flowanime-chunk";
    if (i > 0 && chunks[i - 1].segment !== c.segment) pill.classList.add("segment-start");
    if ((data.cuts || []).includes(i)) pill.classList.add("cut");
    pill.textContent = `${i + 1}: ${c.tokens}/${data.chunk_length}` + (c.moved ? ` ↪${c.moved}` : "");
    pill.title = `segment ${c.segment + 1}` + (c.moved ? `, ${c.moved} tokens moved on by comma backtracking` : "") +
      `\n${c.text}`;
    row.appendChild(pill);
  });
  el.appendChild(row);
  for (const tag of data.split_tags || []) {
    const warn = document.createElement("div");
    warn.className = "flowanime-warning";
    warn.textContent = `cut between chunks: '${tag}'`;
    el.appendChild(warn);
  }
}

// A text box with dynamicPrompts (both of ours, as CLIPTextEncode's) loses its /* */ and // comments when
// the prompt is queued: the frontend's processDynamicPrompt (1.27.10, which 0.3.64 pins, and
// ComfyUI_frontend src/extensions/core/dynamicPrompts.ts@0cebe75 alike) removes /\/\*[\s\S]*?\*\/|\/\/.*/g. The
// counter counts what the node will get, so it drops them the same way, in one pass (that regex rescans
// the rest of the text from every unclosed /*).
const LINE_END = /[\n\r\u2028\u2029]/g;

function withoutComments(text) {
  let out = "", from = 0, at = 0, noCloseFrom = Infinity;
  for (;;) {
    const slash = text.indexOf("/", at);
    if (slash < 0) break;
    const next = text[slash + 1];
    if (next === "*" && slash + 2 < noCloseFrom) {
      const close = text.indexOf("*/", slash + 2);
      if (close >= 0) {
        out += text.slice(from, slash);
        from = at = close + 2;
        continue;
      }
      noCloseFrom = slash + 2; // no "*/" from here on: no later "/*" closes either
    }
    if (next === "/") {
      LINE_END.lastIndex = slash;
      const end = LINE_END.exec(text);
      out += text.slice(from, slash);
      from = at = end ? end.index : text.length;
      continue;
    }
    at = slash + 1;
  }
  return out + text.slice(from);
}

// Then the frontend's processDynamicPrompt picks one option of each {a|b} at random, drops the braces of a
// block with one option ({{masterpiece}} -> masterpiece; NovelAI-style prompts are full of them) and turns
// \{ \} \| into { } |. The counter takes the first option of each block, in one pass without recursion
// (the frontend recurses once per nesting level), and says so when a block offered a choice.
function firstChoices(text) {
  let out = "", depth = 0, skipping = 0, choices = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") { // an escape keeps the next character as written, even a brace
      if (!skipping) out += i + 1 < text.length ? text.slice(i, i + 2) : "\\undefined"; // as the frontend writes it
      i++;
    } else if (skipping) { // inside an option not taken: find the end of its block
      if (c === "{") skipping++;
      else if (c === "}" && --skipping === 0) depth--;
    } else if (c === "{") depth++;
    else if (c === "}" && depth) depth--;
    else if (c === "|" && depth) { skipping = 1; choices = true; }
    else out += c;
  }
  return { text: out.replace(/\\([{}|])/g, "$1"), choices };
}

// The text input fed by another node (a normaliser, a string node): the widget's value is not what
// the encoder will read, so there is nothing to count before a run. Returns null (typed here), "node"
// or "subgraph": the text is typed on the subgraph node, whose input the link starts from (LiteGraph's
// SUBGRAPH_INPUT_ID, -10: no node of this graph).
function textSource(node) {
  // isInputConnected: newer frontends log a deprecation warning on reading input.link
  const slot = (node.inputs || []).findIndex((i, n) => (i.name === "text" || i.widget?.name === "text") &&
    (node.isInputConnected ? node.isInputConnected(n) : i.link != null));
  if (slot < 0) return null;
  let origin;
  try { origin = node.getInputLink?.(slot)?.origin_id; } catch { origin = undefined; }
  return Number(origin) < 0 ? "subgraph" : "node"; // 1.5x frontends give node ids as strings
}

// The server answers 404/405 when it runs a FlowAnime without the route: the pack was installed or
// updated while ComfyUI ran, so the browser has the new extension and the server the old Python.
const NO_ROUTE = "live counter unavailable: restart ComfyUI after installing or updating FlowAnime";
let routeMissing = false;
// After that restart the tab reconnects without a reload: count again.
api.addEventListener?.("reconnected", () => {
  if (!routeMissing) return;
  routeMissing = false;
  for (const node of allNodes()) node.flowanimeSchedule?.();
});
const BUSY_RETRIES = 2;
const BUSY_RETRY_MS = 1500;

async function ask(body) {
  const response = await api.fetchApi(ROUTE, { method: "POST", headers: { "Content-Type": "application/json" },
                                              body: JSON.stringify(body) });
  if (response.status === 404 || response.status === 405) {
    routeMissing = true;
    return { error: NO_ROUTE };
  }
  try {
    return await response.json();
  } catch {
    return { error: `the server answered ${response.status} ${response.statusText || ""}`.trim() };
  }
}

// A node the user can see: in its graph. Not a deleted one, nor a group node's hidden inner node (frontend
// 1.27.10 builds those outside the graph, then sets their text on every Run).
function inGraph(node) {
  return node.graph?.getNodeById?.(node.id) === node;
}

async function count(node, el, retries = BUSY_RETRIES) {
  if (!inGraph(node)) return;
  const source = textSource(node);
  if (source) {
    ++node.flowanimeRequest; // an answer still in flight for the old text is stale
    renderCount(el, { linked: source }, null);
    return;
  }
  const widget = node.widgets?.find((w) => w.name === "text");
  const typed = typeof widget?.value === "string" ? widget.value : "";
  const queued = widget?.dynamicPrompts ? firstChoices(withoutComments(typed)) : { text: typed, choices: false };
  const body = { text: queued.text, comma_backtrack: widgetValue(node, "comma_backtrack", 20) };
  if (node.comfyClass === NORMALIZER) {
    body.normalizer = Object.fromEntries(
      ["drop_quality_tags", "artists_to_own_chunk", "lowercase", "resolve_aliases", "tag_list_csv", "preset"]
        .map((k) => [k, widgetValue(node, k, undefined)]));
  }
  const sent = ++node.flowanimeRequest;
  if (routeMissing) {
    renderCount(el, { error: NO_ROUTE }, typed);
    return;
  }
  let data;
  try {
    data = await ask(body);
  } catch (e) {
    data = { error: String(e) };
  }
  if (sent !== node.flowanimeRequest) return; // a later keystroke's answer wins
  if (data.busy && retries > 0) { // the server's counter was busy (many nodes at once): ask again shortly
    clearTimeout(node.flowanimeRetry);
    node.flowanimeRetry = setTimeout(() => { if (sent === node.flowanimeRequest) count(node, el, retries - 1); },
                                     BUSY_RETRY_MS);
  }
  renderCount(el, { ...data, choices: queued.choices }, typed);
}

function watch(node, el) {
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => count(node, el), DEBOUNCE_MS);
  };
  node.flowanimeRequest = 0;
  node.flowanimeSchedule = schedule;
  const boxes = [];
  for (const w of node.widgets || []) {
    if (w.name?.startsWith("flowanime_")) continue;
    const original = w.callback;
    w.callback = function (...args) {
      schedule();
      return original?.apply(this, args);
    };
    // the multiline text widget is a textarea: count as the user types, not only on blur (`element`; the
    // older `inputEl` is the same textarea, deprecated in newer frontends; the Vue renderer calls `callback`)
    if (w.element?.addEventListener) boxes.push(w.element);
  }
  const listen = () => { for (const box of boxes) box.addEventListener("input", schedule); }; // once per box
  listen();
  // Removed from its graph (deleted, or the graph cleared for an undo, a tab switch or a load, which build
  // new nodes): no timer of it may still send a count, an answer in flight is dropped, its text box stops
  // listening. Added again (the same node put back), it listens and counts again.
  node.flowanimeStop = () => {
    clearTimeout(timer);
    clearTimeout(node.flowanimeRetry);
    ++node.flowanimeRequest;
    for (const box of boxes) box.removeEventListener("input", schedule);
  };
  node.flowanimeStart = () => {
    listen();
    schedule();
  };
  schedule();
}

// The outputs the editor keeps for a workflow's rebuilds: it files a node's output under the workflow that
// queued the prompt, which it learns from the queue's answer (frontend 1.27.10: ChangeTracker's "executed"
// listener reads executionStore.queuedPrompts[prompt_id].workflow, set when POST /prompt answers). A node
// that finishes before that answer arrives, as the normaliser often does, is filed nowhere and its report is
// gone after a tab switch. File our nodes' outputs under the open workflow, whose graph holds the node.
function keepReportForRebuild(event) {
  const detail = event?.detail;
  if (!detail?.output || !nodeForOutput(detail.display_node ?? detail.node)?.flowanimeShowReport) return;
  const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
  if (!tracker) return;
  tracker.nodeOutputs ??= {};
  tracker.nodeOutputs[detail.node] = detail.output;
}

app.registerExtension({
  name: "FlowAnime.PromptCounter",
  async setup() {
    addStyle();
    api.addEventListener?.("executed", keepReportForRebuild);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== ENCODER && nodeData.name !== NORMALIZER) return;
    const reportKey = nodeData.name === ENCODER ? "text" : "tag_report";

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      const counter = addPanel(this, "flowanime_counter", 64);
      this.flowanimeCounter = counter.el;
      watch(this, counter.el);
      return result;
    };

    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function (...args) {
      const result = onConnectionsChange?.apply(this, args);
      this.flowanimeSchedule?.(); // the text input linked or unlinked
      return result;
    };

    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (...args) {
      const result = onConfigure?.apply(this, args);
      this.flowanimeSchedule?.(); // a loaded workflow: count its text
      return result;
    };

    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function (...args) {
      this.flowanimeStop?.();
      this.flowanimeRemoved = true;
      return onRemoved?.apply(this, args);
    };

    const onAdded = nodeType.prototype.onAdded;
    nodeType.prototype.onAdded = function (...args) {
      const result = onAdded?.apply(this, args);
      if (this.flowanimeRemoved) {
        this.flowanimeRemoved = false;
        this.flowanimeStart?.();
      }
      return result;
    };

    showReportAfterRun(nodeType, reportKey);
  },
  // The editor keeps each workflow's last outputs (app.nodeOutputs) and hands them back when it rebuilds the
  // graph (undo, redo, a workflow-tab switch): the nodes it built are new, without their report; show it again.
  onNodeOutputsUpdated(outputs) {
    for (const [key, output] of Object.entries(outputs ?? {})) nodeForOutput(key)?.flowanimeShowReport?.(output);
  },
});

// The Calibrated Schedule node: its report (sigmas, calibration cost, cache hit) after a run. Its `seed`
// (of the calibration's noise, part of the cache key) gets the editor's "control after generate" widget,
// which starts at randomize for any INT named seed: a new node would then recalibrate on every Queue.
// It starts at fixed instead; a loaded workflow's saved value is applied after this and wins. (Setting
// control_after_generate in the schema would not do: a string there names the widget in the frontends
// 1.27 to 1.3x, and False would shift the values saved workflows hold by position.)
app.registerExtension({
  name: "FlowAnime.CalibrationReport",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "FlowAnimeCalibratedSchedule") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      const seed = this.widgets?.find((w) => w.name === "seed");
      const control = seed?.linkedWidgets?.find((w) => w.name === "control_after_generate") ??
        this.widgets?.find((w) => w.name === "control_after_generate");
      if (control && control.value !== "fixed") control.value = "fixed";
      return result;
    };
    showReportAfterRun(nodeType, "text");
  },
});

// Empty Latent for Model: picking a sized preset shows its size in the width and height widgets, which
// count only for `custom` (so `custom` starts from the size last picked). Where the node sits in a subgraph
// with its widgets promoted (linked to the subgraph's inputs), the subgraph node shows them too: there the
// editor queues the subgraph node's values (1.27.10 copies them into the inner widgets when it serializes,
// 1.5x reads them from its widget store), so its width and height are set as well, and a preset picked on
// the subgraph node sizes them just the same.
const LATENT = "FlowAnimeEmptyLatentForModel";

// The links from the input `name` of subgraph `graph` to the nodes inside it.
function subgraphInputLinks(graph, name) {
  const input = graph?.inputNode?.slots?.find((s) => s.name === name);
  return (input?.linkIds ?? []).map((id) => graph.getLink?.(id) ?? graph.links?.get?.(id)).filter(Boolean);
}

// The Empty Latent node whose preset the input `name` of `node` sets: the node itself, or through a subgraph
// node's input the node it is linked to inside (nested subgraphs too).
function presetSource(node, name) {
  if (node.comfyClass === LATENT) return name === "preset" ? node : null;
  for (const link of node.subgraph ? subgraphInputLinks(node.subgraph, name) : []) {
    const inner = node.subgraph.getNodeById(link.target_id);
    const input = inner?.inputs?.[link.target_slot];
    const found = input && presetSource(inner, input.widget?.name ?? input.name);
    if (found) return found;
  }
  return null;
}

// Sets the widget `name` of `node`, and the widget of every subgraph node showing it through a promotion.
function showValue(node, name, value) {
  const widget = node.widgets?.find((w) => w.name === name);
  if (widget && widget.value !== value) {
    widget.value = value;
    widget.callback?.(value);
  }
  node.setDirtyCanvas?.(true, true);
  const graph = node.graph;
  if (!graph?.inputNode) return; // the root graph: no subgraph node shows it
  for (const sgInput of graph.inputNode.slots ?? []) {
    const feeds = subgraphInputLinks(graph, sgInput.name).some((link) => String(link.target_id) === String(node.id) &&
      [node.inputs?.[link.target_slot]?.widget?.name, node.inputs?.[link.target_slot]?.name].includes(name));
    if (!feeds) continue;
    for (const host of allNodes()) {
      if (host.subgraph !== graph) continue;
      const input = host.inputs?.find((i) => i.name === sgInput.name);
      if (input) showValue(host, input.name, value);
    }
  }
}

function applyPreset(latent, value) {
  // picked on the inner node: the subgraph node's promoted preset shows it too (frontend 1.27.10 would
  // otherwise copy the subgraph node's old preset back into the inner node when it queues)
  showValue(latent, "preset", value);
  const size = /^(\d+)x(\d+) /.exec(String(value));
  if (!size) return;
  showValue(latent, "width", Number(size[1]));
  showValue(latent, "height", Number(size[2]));
}

// A subgraph node's promoted preset: its widget's callback sizes the inner node. Frontend 1.27.10 copies the
// inner widget with our callback (marked, left as is); 1.5x gives the subgraph node its own widget, whose
// callback is what both its renderers call on a pick.
function watchPromotedPresets(host) {
  for (const input of host.inputs ?? []) {
    if (!presetSource(host, input.name)) continue;
    const widget = host.widgets?.find((w) => w.name === input.name) ?? input._widget;
    if (!widget || widget.flowanimePreset) continue;
    const callback = widget.callback;
    widget.callback = function (value, ...rest) {
      const out = callback?.call(this, value, ...rest);
      const latent = presetSource(host, input.name);
      if (latent) applyPreset(latent, value ?? widget.value);
      return out;
    };
    widget.flowanimePreset = true;
  }
}

const watchedSubgraphs = new WeakSet();

app.registerExtension({
  name: "FlowAnime.LatentPresetSize",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== LATENT) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      const preset = this.widgets?.find((w) => w.name === "preset");
      if (!preset) return result;
      const callback = preset.callback;
      const node = this;
      preset.callback = function (value, ...rest) {
        const out = callback?.call(this, value, ...rest);
        applyPreset(node, value ?? preset.value);
        return out;
      };
      preset.flowanimePreset = true;
      return result;
    };
  },
  // Subgraph nodes: the editor announces each widget promoted to one (when promoted, and when a workflow
  // with promotions loads); one listener per subgraph definition, which lives as long as the definition.
  nodeCreated(node) {
    const subgraph = node.subgraph;
    if (!subgraph?.events?.addEventListener || watchedSubgraphs.has(subgraph)) return;
    watchedSubgraphs.add(subgraph);
    subgraph.events.addEventListener("widget-promoted", (e) => {
      const host = e.detail?.subgraphNode;
      if (host) watchPromotedPresets(host);
    });
  },
});
