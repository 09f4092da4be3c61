"""Write example_workflows/*.json (ComfyUI's UI format, version 0.4) from the recipes below.

Widget values are laid out from the real node definitions (ComfyUI's and this pack's), so the files
stay in step with the nodes. Run with the test environment's Python and a ComfyUI checkout:

    python scripts/build_example_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "tests"))

import flowanime_testkit as kit  # noqa: E402

PACK_VERSION = "0.1.0"
COMFY_VERSION = "0.3.64"

NEKO_PROMPT = (
    "1girl, absurdres, animal ears, bow, braid, cat ears, dress, green dress, hair bow, highres, kaenbyou rin, "
    "long hair, long sleeves, looking at viewer, nekomata, oil painting (medium), painting (medium), portrait, "
    "red eyes, red hair, red ribbon, neck ribbon, smile, solo, touhou, traditional media, twin braids"
)
NEKO_NEGATIVE = (
    "lowres, pixelated, downscaled, upscaled, jpeg artifacts, compression artifacts, scan artifacts, blurry, "
    "censored, bar censor, mosaic censoring, heart censor, bad anatomy, bad hands, bad feet, extra digits, "
    "fewer digits, watermark, text, dated, watermark grid, sample watermark, artist name"
)
NAI_PROMPT = (
    "1girl, frieren, sousou no frieren, elf, pointy ears, long hair, white hair, twintails, green eyes, "
    "earrings, looking at viewer, smile, outdoors, flower field, masterpiece, good score, best quality, aesthetic"
)
NAI_NEGATIVE = (
    "(very displeasing, displeasing, bad score, worse score, bad quality,worst quality, worst detail:1.1),sketch, "
    "loli, child, patreon logo, watermark, signature, blurry, bad hands, bad anatomy, bad fingers, extra fingers, "
    "extra limbs, deformed limbs, very displeasing, displeasing, comic, speech bubble, lowres, twitter username, "
    "artist name, (light particles:0.4)"
)
ROUWEI_PROMPT = (
    "by kantoku, by wlop, masterpiece, best quality, 1girl, hatsune_miku, vocaloid, twintails, aqua_hair, "
    "aqua_eyes, detached_sleeves, necktie, looking at viewer, smile, night sky, city lights"
)
RDBT_PROMPT = (
    "@digital anime illustration, 1girl, solo. A girl with long silver hair and blue eyes sits on a window seat "
    "in a white dress, reading an old book. Rain streaks the glass behind her, and the soft evening light falls "
    "across the pages and her face."
)


# The graph editor's geometry (ComfyUI frontend 1.27.10, the one ComfyUI 0.3.64 pins; LiteGraph constants
# and LGraphNode.computeSize): a title bar above pos, one 20 px row per slot, 20 px widgets 4 px apart.
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT, WIDGET_SPACING = 30, 20, 20, 4
BADGE_HEIGHT = 20  # the node-source badge ("FlowAnime") sits above the title bar
TEXTAREA_MIN_HEIGHT = 50  # a multiline widget's minimum in that frontend (--comfy-widget-min-height)
CHAR_WIDTH = 8.4  # the editor's own estimate for text it cannot measure (0.6 x 14 px): generous
GAP_X, GAP_Y = 110, 50  # clear space between columns, and between a node and the title bar below it
MIN_WIDTH = {"Note": 380, "SaveImage": 380,  # SaveImage: room for the preview after a run
             "FlowAnimeBooruPromptNormalizer": 400, "FlowAnimeCLIPTextEncodeBreak": 400}  # prompts: readable lines
NODE_HEIGHT = {"SaveImage": 420}
# Panels web/flowanime.js adds to the prompt nodes: the live token counter (always shown) and the
# report after a run (the node grows by it). The node is sized for the counter; room for the report
# is left below it.
COUNTER_PANEL_HEIGHT, REPORT_PANEL_HEIGHT = 64, 110
PROMPT_PANEL_NODES = {"FlowAnimeBooruPromptNormalizer", "FlowAnimeCLIPTextEncodeBreak"}


def textarea_height(text: str, width: float) -> int:
    """A multiline widget tall enough to show the text (about 7 px a character, 16 px a line)."""
    chars_per_line = max(20, int((width - 30) / 7))
    lines = sum(1 + len(part) // chars_per_line for part in (text or "").split("\n")) + 1
    return int(min(240, max(TEXTAREA_MIN_HEIGHT + 10, 16 * lines + 12)))


class UIGraph:
    """Builds a UI-format workflow: nodes with inputs/outputs/widgets_values, and the links table.

    Layout: nodes sit in columns, data flows left to right (every link goes to a later column), and a
    node's size is the size the graph editor computes for it (rows for its slots, its widgets, a
    taller text box for prompts). A node placed with y=None goes below the previous node of its
    column; an explicit y lines slots up so that long links run straight through the gaps."""

    def __init__(self, node_classes, display_names=None):
        self.node_classes, self.display_names = node_classes, display_names or {}
        self.nodes, self.links = [], []
        self.layout = {}  # node id -> (column, y or None)

    def add(self, class_type, col, y=None, widgets=None, title=None, **links):
        widgets = dict(widgets or {})
        cls = self.node_classes.get(class_type)
        node = {
            "id": len(self.nodes) + 1, "type": class_type, "pos": [0, 0], "size": [0, 0], "flags": {},
            "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
            "properties": {"Node name for S&R": class_type}, "widgets_values": [],
        }
        if title:
            node["title"] = title
        if class_type == "Note":
            node["widgets_values"] = [widgets.pop("text")]
            node["color"], node["bgcolor"] = "#432", "#653"
            node["_widgets"] = [("text", "STRING", {"multiline": True})]
            node["_rows"] = 1
        else:
            is_ours = class_type.startswith(kit.NODE_PREFIX)
            node["properties"].update({"cnr_id": "flowanime" if is_ours else "comfy-core",
                                       "ver": PACK_VERSION if is_ours else COMFY_VERSION})
            if class_type == "FlowAnimeEmptyLatentForModel":  # the size widgets show the preset's size
                widgets.update(dict(zip(("width", "height"), self._preset_size(cls, widgets.get("preset")) or ())))
            node["_widgets"], slot_inputs = [], 0
            optional, trailing_defaults = kit.optional_inputs(cls), 0
            for name, kind, options, is_widget in kit.input_specs(cls):
                if not is_widget or name in links:
                    entry = {"name": name, "type": kind, "link": None}
                    if is_widget:
                        entry["widget"] = {"name": name}
                    node["inputs"].append(entry)
                if is_widget:
                    given = name in widgets or name in links
                    value = widgets.pop(name) if name in widgets else kit.widget_default(kind, options)
                    node["widgets_values"].append(value)
                    node["_widgets"].append((name, kind, options))
                    if kit.has_control_widget(name, kind, options):
                        node["widgets_values"].append("fixed")
                        node["_widgets"].append(("control_after_generate", "COMBO", {}))
                        given = True
                    trailing_defaults = 0 if given or name not in optional else trailing_defaults + 1
                else:
                    slot_inputs += 1
            # Optional widgets left at their default are not written (finish() drops them after the
            # layout, which sizes the node with them as the editor shows it): the editor fills them in,
            # so the file is the same whether the ComfyUI it is built on has them or not (CLIPLoader's
            # and, in newer ComfyUI, TripleCLIPLoader's `device`).
            node["_trailing_defaults"] = trailing_defaults
            returns = list(cls.RETURN_TYPES)
            names = list(getattr(cls, "RETURN_NAMES", None) or returns)
            node["outputs"] = [{"name": n, "type": t, "links": []} for n, t in zip(names, returns)]
            node["_rows"] = max(1, slot_inputs, len(returns))
            for name, (source, slot) in links.items():
                link_id = len(self.links) + 1
                link_type = source["outputs"][slot]["type"]
                self.links.append([link_id, source["id"], slot, node["id"], name, link_type])
                source["outputs"][slot]["links"].append(link_id)
        if widgets:
            raise KeyError(f"{class_type} has no widgets {sorted(widgets)}")
        self.nodes.append(node)
        self.layout[node["id"]] = (col, y)
        return node

    @staticmethod
    def _preset_size(cls, preset):
        import importlib

        presets = importlib.import_module(cls.__module__).PRESETS  # the node's own table
        return presets.get(preset or cls.INPUT_TYPES()["required"]["preset"][1]["default"])

    def _width(self, node) -> int:
        """At least what the editor's computeSize asks for, with its own text-width estimate."""
        title = node.get("title") or self.display_names.get(node["type"]) or node["type"]
        values = [v for v, (_n, kind, options) in zip(node["widgets_values"], node["_widgets"]) if not options.get("multiline")]
        names = [n for n, _kind, options in node["_widgets"] if not options.get("multiline")]
        # a widget shows its label and its value on one line: long file names need the room
        widget_text = max((len(n) + len(str(v)) for n, v in zip(names, values)), default=0) * 7
        slots = max((len(i["name"]) for i in node["inputs"]), default=0) + max((len(o["name"]) for o in node["outputs"]), default=0)
        need = max(TITLE_HEIGHT * 1.33 + len(title) * CHAR_WIDTH, widget_text + 104, slots * CHAR_WIDTH + 45, 210)
        return int(max(MIN_WIDTH.get(node["type"], 300), -(-need // 10) * 10))

    def _height(self, node, width) -> int:
        """LGraphNode.computeSize's height, with prompt boxes sized to their text."""
        height = node["_rows"] * SLOT_HEIGHT
        if node["_widgets"]:
            values = iter(node["widgets_values"])
            for _name, kind, options in node["_widgets"]:
                value = next(values)
                multiline = kind == "STRING" and options.get("multiline")
                height += (textarea_height(value, width) if multiline else WIDGET_HEIGHT) + WIDGET_SPACING
            if node["type"] in PROMPT_PANEL_NODES:
                height += COUNTER_PANEL_HEIGHT + WIDGET_SPACING
            height += 8
        return max(NODE_HEIGHT.get(node["type"], 0), height + 6)

    def _place(self):
        columns = sorted({col for col, _ in self.layout.values()})
        widths = {c: max(self._width(n) for n in self.nodes if self.layout[n["id"]][0] == c) for c in columns}
        x, bottoms = 0, {}
        col_x = {}
        for c in columns:
            col_x[c] = x
            x += widths[c] + GAP_X
        for node in self.nodes:
            col, y = self.layout[node["id"]]
            node["size"] = [widths[col], self._height(node, widths[col])]
            if y is None:  # below the node added before it to this column (overlaps are checked after)
                y = bottoms.get(col, -GAP_Y - TITLE_HEIGHT) + GAP_Y + TITLE_HEIGHT
            node["pos"] = [col_x[col], y]
            report_room = REPORT_PANEL_HEIGHT + WIDGET_SPACING if node["type"] in PROMPT_PANEL_NODES else 0
            bottoms[col] = y + node["size"][1] + report_room

    def finish(self):
        self._place()
        for link in self.links:  # input slot names -> indices, as the editor stores them
            target = self.nodes[link[3] - 1]
            index = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == link[4])
            target["inputs"][index]["link"] = link[0]
            link[4] = index
        for node in self.nodes:
            for slot, out in enumerate(node["outputs"]):
                out["slot_index"] = slot
        problems = layout_problems(self.nodes, self.links, {n["id"]: n.pop("_widgets") for n in self.nodes},
                                   {n["id"]: n.pop("_rows") for n in self.nodes})
        if problems:
            raise ValueError("layout: " + "; ".join(problems))
        for node in self.nodes:
            values = node["widgets_values"]
            del values[len(values) - node.pop("_trailing_defaults", 0):]
        return {
            "id": None,  # build() names it after the file
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [40, 60]}}, "version": 0.4,
        }


def node_rect(node, margin=0.0):
    """The area a node covers on the canvas, title bar and the badges drawn above it included:
    (left, top, right, bottom)."""
    x, y = node["pos"]
    w, h = node["size"]
    return (x - margin, y - TITLE_HEIGHT - BADGE_HEIGHT - margin, x + w + margin, y + h + margin)


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def spline(start, end, samples=48):
    """The editor's link curve: a cubic Bezier leaving the output to the right and entering the input
    from the left, control points a quarter of the distance out (LiteGraph's SPLINE_LINK)."""
    (x0, y0), (x3, y3) = start, end
    reach = 0.25 * ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
    x1, x2 = x0 + reach, x3 - reach
    points = []
    for i in range(samples + 1):
        t = i / samples
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        points.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y0 + c * y3 + d * y3))
    return points


def layout_problems(nodes, links, widgets_of, rows_of) -> list[str]:
    """Overlapping nodes, links that run backwards or behind a third node (from the layout alone)."""
    problems = []
    by_id = {n["id"]: n for n in nodes}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if overlaps(node_rect(a, 10), node_rect(b, 10)):
                problems.append(f"nodes {a['id']} {a['type']} and {b['id']} {b['type']} are closer than 20 px")
    for _link_id, src, src_slot, dst, dst_slot, _type in links:
        source, target = by_id[src], by_id[dst]
        start = (source["pos"][0] + source["size"][0] - 9, source["pos"][1] + (src_slot + 0.7) * SLOT_HEIGHT)
        end = (target["pos"][0] + 10, target["pos"][1] + input_slot_y(target, dst_slot, widgets_of[dst], rows_of[dst]))
        if end[0] < start[0] + 40:
            problems.append(f"link {source['type']} -> {target['type']} runs backwards")
            continue
        for other in nodes:
            if other["id"] in (src, dst):
                continue
            rect = node_rect(other, 5)
            if any(rect[0] < x < rect[2] and rect[1] < y < rect[3] for x, y in spline(start, end)):
                problems.append(f"link {source['type']} -> {target['type']} runs behind {other['id']} {other['type']}")
    return problems


def input_slot_y(node, slot, widgets, rows) -> float:
    """Slot rows from the top; an input that feeds a widget sits at that widget's row."""
    entry = node["inputs"][slot]
    if "widget" not in entry:
        return (sum("widget" not in i for i in node["inputs"][:slot]) + 0.7) * SLOT_HEIGHT
    y = rows * SLOT_HEIGHT + 6
    for name, *_ in widgets:
        if name == entry["name"]:
            return y + WIDGET_HEIGHT / 2
        y += WIDGET_HEIGHT + WIDGET_SPACING
    return y


# Where the long links run: the checkpoint's VAE goes along the top (y 54) to VAEDecode, the model
# from the sampling patch straight along y 354 to the KSampler; the latent node sits above that lane,
# the prompt encoders below it.
TOP, LATENT_Y, MODEL_Y, VAE_DECODE_Y, PROMPTS_Y = 0, 140, 340, 20, 450


def encode_pair(g, clip, positive, negative, normalize_options, col=0, encoder_col=1):
    normalizer = g.add("FlowAnimeBooruPromptNormalizer", col, None, {"text": positive, **normalize_options})
    pos = g.add("FlowAnimeCLIPTextEncodeBreak", encoder_col, None, {"comma_backtrack": 20}, title="Positive",
                clip=clip, text=(normalizer, 0))
    neg = g.add("FlowAnimeCLIPTextEncodeBreak", encoder_col, None, {"text": negative, "comma_backtrack": 20},
                title="Negative", clip=clip)
    return pos, neg


def sample_decode_save(g, model, pos, neg, latent, vae, prefix, col=3, decode_y=VAE_DECODE_Y, **ksampler):
    """KSampler -> VAEDecode -> SaveImage, the tail every recipe shares."""
    sample = g.add("KSampler", col, MODEL_Y, {"seed": 1, **ksampler}, model=model, positive=(pos, 0), negative=(neg, 0),
                   latent_image=(latent, 0))
    image = g.add("VAEDecode", col + 1, decode_y, samples=(sample, 0), vae=vae)
    g.add("SaveImage", col + 2, decode_y, {"filename_prefix": f"FlowAnime/{prefix}"}, images=(image, 0))


def nekofantasia_inputs(g):
    """Checkpoint, the three text encoders, the flow patch (shift 3), the card's prompts, ~1 MP latent."""
    ckpt = g.add("CheckpointLoaderSimple", 0, TOP, {"ckpt_name": "Nekofantasia-01.safetensors"})
    clip = g.add("TripleCLIPLoader", 0, None, {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                               "clip_name3": "t5xxl_fp16.safetensors"})
    flow = g.add(kit.PATCH, 1, MODEL_Y, {"shift": 3.0}, model=(ckpt, 0))
    pos, neg = encode_pair(g, (clip, 0), NEKO_PROMPT, NEKO_NEGATIVE, {"drop_quality_tags": True})
    latent = g.add("FlowAnimeEmptyLatentForModel", 2, LATENT_Y, {"preset": "896x1152 (7:9 portrait)"}, model=(flow, 0))
    return ckpt, flow, pos, neg, latent


def nekofantasia(g):
    ckpt, flow, pos, neg, latent = nekofantasia_inputs(g)
    sample_decode_save(g, (flow, 0), pos, neg, latent, (ckpt, 2), "nekofantasia", steps=20, cfg=5.0,
                       sampler_name="flowanime_dopri5", scheduler="simple")
    g.add("Note", 3, None, {"text": "Nekofantasia 0.1 (SD3.5 Medium, rectified flow). Card recipe: Dopri5 (adaptive: "
                                    "'steps' only sets the schedule's end points), CFG 3-7, ~1 MP with sides divisible "
                                    "by 64, no quality tags, no underscores (the normalizer handles both)."})


def nekofantasia_calibrated(g):
    """The same model and prompts, sampled in a fixed number of calls on sigmas calibrated to the model."""
    ckpt, flow, pos, neg, latent = nekofantasia_inputs(g)
    schedule = g.add("FlowAnimeCalibratedSchedule", 3, MODEL_Y, {"cfg": 5.0, "steps": 12}, model=(flow, 0),
                     positive=(pos, 0), negative=(neg, 0), latent=(latent, 0))
    guider = g.add("CFGGuider", 3, None, {"cfg": 5.0}, model=(flow, 0), positive=(pos, 0), negative=(neg, 0))
    sampler = g.add("FlowAnimeSamplerRungeKuttaODE", 3, None, {"method": "exp_multistep"})
    noise = g.add("RandomNoise", 3, None, {"noise_seed": 1})
    sample = g.add("SamplerCustomAdvanced", 4, LATENT_Y, noise=(noise, 0), guider=(guider, 0), sampler=(sampler, 0),
                   sigmas=(schedule, 0), latent_image=(latent, 0))
    image = g.add("VAEDecode", 5, VAE_DECODE_Y, samples=(sample, 0), vae=(ckpt, 2))
    g.add("SaveImage", 6, VAE_DECODE_Y, {"filename_prefix": "FlowAnime/nekofantasia-calibrated"}, images=(image, 0))
    g.add("Note", 4, None, {"text": "A fixed 12 model calls per image (13 when the schedule's last step is taken in two "
                                    "stages); flowanime_dopri5 spends 43-61 on the benchmark problems. The Calibrated "
                                    "Schedule node solves once, accurately, for this model, prompt, CFG and size, and "
                                    "places the calls where the trajectories bend. The result is cached "
                                    "(user/flowanime/schedules): more seeds of the same prompt cost no calibration. Its "
                                    "report gives the calls it spent and the schedule's error against the accurate "
                                    "solve: if it warns, raise steps. Keep cfg equal on the calibration node and the "
                                    "CFGGuider. For one image per prompt, the Dopri5 workflow costs fewer calls in all. "
                                    "Not the card's recipe: it asks for a Runge-Kutta sampler (Dopri5 or Bosh3), which "
                                    "the Dopri5 workflow is; this one trades some accuracy for a fixed cost."})


def nai_v2_fm(g):
    ckpt = g.add("CheckpointLoaderSimple", 0, TOP, {"ckpt_name": "naiV2FmAlpha_v10.safetensors"})
    flow = g.add(kit.PATCH, 1, MODEL_Y, {"shift": 3.5}, model=(ckpt, 0))
    pos, neg = encode_pair(g, (ckpt, 1), NAI_PROMPT, NAI_NEGATIVE, {"preset": "nai-v2-fm"})
    latent = g.add("FlowAnimeEmptyLatentForModel", 2, LATENT_Y, {"preset": "768x1024 (3:4, nai-v2-fm)"}, model=(flow, 0))
    sample_decode_save(g, (flow, 0), pos, neg, latent, (ckpt, 2), "nai-v2-fm", steps=48, cfg=6.0,
                       sampler_name="euler", scheduler="simple")
    g.add("Note", 3, None, {"text": "nai-v2-fm-alpha: an SD1.5 UNet trained with a flow-matching objective. ComfyUI loads "
                                    "it as eps; the FlowAnime patch makes it a flow model (shift 3-4). Card recipe: "
                                    "Euler, 48 steps, CFG 6, 768x1024, tag order 1girl, character, series, tags, "
                                    "artists, quality tags."})


def rouwei(g):
    ckpt = g.add("CheckpointLoaderSimple", 0, TOP, {"ckpt_name": "rouwei_v0.8_vpred.safetensors"})
    vpred = g.add("ModelSamplingDiscrete", 1, MODEL_Y, {"sampling": "v_prediction", "zsnr": True}, model=(ckpt, 0))
    pos, neg = encode_pair(g, (ckpt, 1), ROUWEI_PROMPT, "worst quality, low quality, watermark", {"preset": "rouwei"})
    latent = g.add("FlowAnimeEmptyLatentForModel", 2, LATENT_Y, {"preset": "832x1216 (13:19 portrait)"}, model=(vpred, 0))
    sample_decode_save(g, (vpred, 0), pos, neg, latent, (ckpt, 2), "rouwei", steps=24, cfg=4.0,
                       sampler_name="euler_ancestral", scheduler="normal")
    g.add("Note", 3, None, {"text": "RouWei 0.8 v-pred (SDXL). Artist tags must sit in their own CLIP chunk: the "
                                    "normalizer's rouwei preset puts them, with the quality tags, in a first chunk "
                                    "before a BREAK (the card's example), the encoder starts a chunk there. Card "
                                    "recipe for v-pred: v_prediction + zsnr, Euler a, 20-28 steps, CFG 3-5, ~1 MP "
                                    "with sides divisible by 32. The epsilon version: bypass ModelSamplingDiscrete "
                                    "(Ctrl+B) and set CFG 7 (card: 4-9)."})


def rdbt_anima(g):
    # The model chain runs straight along one lane; each loader sits in the column before its user.
    unet = g.add("UNETLoader", 0, MODEL_Y, {"unet_name": "rdbt_anima_v0.35.safetensors"})
    lora_a = g.add("LoraLoaderModelOnly", 1, MODEL_Y, {"lora_name": "anima_style_a.safetensors", "strength_model": 0.8},
                   model=(unet, 0))
    lora_b = g.add("LoraLoaderModelOnly", 2, MODEL_Y, {"lora_name": "anima_style_b.safetensors", "strength_model": 0.5},
                   model=(lora_a, 0))
    flow = g.add(kit.PATCH, 3, MODEL_Y, {"shift": 3.0, "timestep_multiplier": "1"}, model=(lora_b, 0))
    clip = g.add("CLIPLoader", 3, None, {"clip_name": "qwen_3_06b_base.safetensors", "type": "stable_diffusion"})
    latent = g.add("FlowAnimeEmptyLatentForModel", 4, LATENT_Y, {"preset": "1024x1024 (1:1)"}, model=(flow, 0))
    pos = g.add("FlowAnimeCLIPTextEncodeBreak", 4, PROMPTS_Y, {"text": RDBT_PROMPT}, title="Positive", clip=(clip, 0))
    neg = g.add("FlowAnimeCLIPTextEncodeBreak", 4, None, {"text": ""}, title="Negative (unused at CFG 1)", clip=(clip, 0))
    vae = g.add("VAELoader", 5, 730, {"vae_name": "qwen_image_vae.safetensors"})
    sample_decode_save(g, (flow, 0), pos, neg, latent, (vae, 0), "rdbt-anima", col=5, decode_y=MODEL_Y, steps=30, cfg=1.0,
                       sampler_name="er_sde", scheduler="simple")
    g.add("Note", 0, None, {"text": "RDBT on Anima: guidance-distilled, so CFG 1 (one model pass per step). v0.35 has no "
                                    "step distillation: 30 steps (24 was the advice for v0.32.b). It has no style of its "
                                    "own: stack style LoRAs (the two loaders name placeholder files: pick yours, or "
                                    "bypass them with Ctrl+B), or write a specific @artist; the @ category triggers "
                                    "(@digital anime illustration, ...) are not a style. Natural-language captions, as it "
                                    "was trained on. Anima feeds its "
                                    "network sigma itself: the FlowAnime patch uses multiplier 1. Needs a ComfyUI with "
                                    "Anima support (newer than 0.3.64)."})


WORKFLOWS = {
    "Nekofantasia 0.1 (SD3.5, Dopri5).json": nekofantasia,
    "Nekofantasia 0.1 (SD3.5, calibrated schedule, 12 calls).json": nekofantasia_calibrated,
    "nai-v2-fm-alpha (SD1.5 flow).json": nai_v2_fm,
    "RouWei 0.8 vpred (SDXL, BREAK).json": rouwei,
    "RDBT on Anima (CFG 1, LoRAs).json": rdbt_anima,
}


def build(node_classes, display_names=None) -> dict[str, dict]:
    """display_names: ComfyUI's NODE_DISPLAY_NAME_MAPPINGS (titles decide how wide a node must be)."""
    out = {}
    for name, recipe in WORKFLOWS.items():
        g = UIGraph(node_classes, display_names)
        recipe(g)
        out[name] = g.finish()
        out[name]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowanime/example_workflows/{name}"))  # one per file
    return out


def main():
    comfy = kit.find_comfyui()
    if comfy is None:
        sys.exit(kit.NO_COMFYUI_REASON)
    harness = kit.ComfyHarness.start(comfy, PACK_ROOT, Path(tempfile.mkdtemp()))
    target = PACK_ROOT / "example_workflows"
    target.mkdir(exist_ok=True)
    for name, workflow in build(harness.nodes.NODE_CLASS_MAPPINGS, harness.nodes.NODE_DISPLAY_NAME_MAPPINGS).items():
        (target / name).write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
        print("wrote", target / name)


if __name__ == "__main__":
    main()
