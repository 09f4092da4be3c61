// FlowAnime graph-editor extension.
// - Under the text of "CLIP Text Encode with BREAK" and "Booru Prompt Normalizer": a live token count and
//   where each 75-token CLIP chunk ends (BREAK segments and comma-backtracking moves included), counted
//   on the server by the pack's own chunking (POST /flowanime/prompt_tokens), as the user types.
// - After a run: the encoder's chunk report and the normaliser's tag report, shown on the node.
// - Empty Latent for Model: a picked preset's size shown in its width and height widgets.
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
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output) {
    onExecuted?.apply(this, arguments);
    const text = output?.[key]?.[0];
    if (typeof text !== "string") return;
    if (!this.flowanimeReport) {
      this.flowanimeReport = addPanel(this, "flowanime_report", 110).el;
      this.setSize([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
    }
    this.flowanimeReport.textContent = text;
    this.setDirtyCanvas(true, true);
  };
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
  const graphs = [app.graph, ...(app.graph?.subgraphs?.values?.() ?? [])]; // subgraphs: frontend 1.27 on
  for (const graph of graphs) for (const node of graph?.nodes ?? graph?._nodes ?? []) node.flowanimeSchedule?.();
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

async function count(node, el, retries = BUSY_RETRIES) {
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
    setTimeout(() => { if (sent === node.flowanimeRequest) count(node, el, retries - 1); }, BUSY_RETRY_MS);
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
  for (const w of node.widgets || []) {
    if (w.name?.startsWith("flowanime_")) continue;
    const original = w.callback;
    w.callback = function (...args) {
      schedule();
      return original?.apply(this, args);
    };
    // the multiline text widget is a textarea: count as the user types, not only on blur (`element`; the
    // older `inputEl` is the same textarea, deprecated in newer frontends; the Vue renderer calls `callback`)
    w.element?.addEventListener?.("input", schedule);
  }
  schedule();
}

app.registerExtension({
  name: "FlowAnime.PromptCounter",
  async setup() {
    addStyle();
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

    showReportAfterRun(nodeType, reportKey);
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
// count only for `custom` (so `custom` starts from the size last picked).
app.registerExtension({
  name: "FlowAnime.LatentPresetSize",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "FlowAnimeEmptyLatentForModel") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      const preset = this.widgets?.find((w) => w.name === "preset");
      if (!preset) return result;
      const callback = preset.callback;
      const node = this;
      preset.callback = function (value, ...rest) {
        const out = callback?.call(this, value, ...rest);
        const size = /^(\d+)x(\d+) /.exec(String(value ?? preset.value));
        if (size) {
          for (const [name, side] of [["width", Number(size[1])], ["height", Number(size[2])]]) {
            const widget = node.widgets.find((w) => w.name === name);
            if (widget && widget.value !== side) {
              widget.value = side;
              widget.callback?.(side);
            }
          }
          node.setDirtyCanvas?.(true, true);
        }
        return out;
      };
      return result;
    };
  },
});
