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
    "@digital anime illustration, 1girl, solo, long silver hair, blue eyes, white dress, sitting, window, "
    "book. A girl with long silver hair sits by a rain-streaked window and reads an old book in soft evening light."
)


class UIGraph:
    """Builds a UI-format workflow: nodes with inputs/outputs/widgets_values, and the links table."""

    def __init__(self, node_classes):
        self.node_classes = node_classes
        self.nodes, self.links = [], []

    def add(self, class_type, col, row, widgets=None, title=None, **links):
        widgets = dict(widgets or {})
        cls = self.node_classes.get(class_type)
        node = {
            "id": len(self.nodes) + 1, "type": class_type, "pos": [40 + col * 380, 40 + row * 250],
            "size": [340, 220], "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [], "outputs": [], "properties": {"Node name for S&R": class_type}, "widgets_values": [],
        }
        if title:
            node["title"] = title
        if class_type == "Note":
            node["widgets_values"] = [widgets.pop("text")]
            node["color"], node["bgcolor"] = "#432", "#653"
        else:
            is_ours = class_type.startswith(kit.NODE_PREFIX)
            node["properties"].update({"cnr_id": "flowanime" if is_ours else "comfy-core",
                                       "ver": PACK_VERSION if is_ours else COMFY_VERSION})
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
                    if kit.has_control_widget(name, kind, options):
                        node["widgets_values"].append("fixed")
                        given = True
                    trailing_defaults = 0 if given or name not in optional else trailing_defaults + 1
            # Optional widgets left at their default are not written: the editor fills them in, so the
            # file is the same whether the ComfyUI it is built on has them or not (CLIPLoader's and,
            # in newer ComfyUI, TripleCLIPLoader's `device`).
            del node["widgets_values"][len(node["widgets_values"]) - trailing_defaults:]
            returns = list(cls.RETURN_TYPES)
            names = list(getattr(cls, "RETURN_NAMES", None) or returns)
            node["outputs"] = [{"name": n, "type": t, "links": []} for n, t in zip(names, returns)]
            for name, (source, slot) in links.items():
                link_id = len(self.links) + 1
                link_type = source["outputs"][slot]["type"]
                self.links.append([link_id, source["id"], slot, node["id"], name, link_type])
                source["outputs"][slot]["links"].append(link_id)
        if widgets:
            raise KeyError(f"{class_type} has no widgets {sorted(widgets)}")
        self.nodes.append(node)
        return node

    def finish(self):
        for link in self.links:  # input slot names -> indices, as the editor stores them
            target = self.nodes[link[3] - 1]
            index = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == link[4])
            target["inputs"][index]["link"] = link[0]
            link[4] = index
        for node in self.nodes:
            for slot, out in enumerate(node["outputs"]):
                out["slot_index"] = slot
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(self.nodes[0]["widgets_values"]))),
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4,
        }


def encode_pair(g, clip, positive, negative, normalize_options, col=1):
    normalizer = g.add("FlowAnimeBooruPromptNormalizer", col, 0, {"text": positive, **normalize_options})
    pos = g.add("FlowAnimeCLIPTextEncodeBreak", col + 1, 0, {"comma_backtrack": 20}, title="Positive",
                clip=clip, text=(normalizer, 0))
    neg = g.add("FlowAnimeCLIPTextEncodeBreak", col + 1, 1, {"text": negative, "comma_backtrack": 20},
                title="Negative", clip=clip)
    return pos, neg


def sample_decode_save(g, model, pos, neg, latent, vae, prefix, **ksampler):
    """KSampler -> VAEDecode -> SaveImage, the tail every recipe shares."""
    sample = g.add("KSampler", 3, 0, {"seed": 1, **ksampler}, model=model, positive=(pos, 0), negative=(neg, 0),
                   latent_image=(latent, 0))
    image = g.add("VAEDecode", 4, 0, samples=(sample, 0), vae=vae)
    g.add("SaveImage", 4, 1, {"filename_prefix": f"FlowAnime/{prefix}"}, images=(image, 0))


def nekofantasia(g):
    ckpt = g.add("CheckpointLoaderSimple", 0, 0, {"ckpt_name": "nekofantasia_v0.1.safetensors"})
    clip = g.add("TripleCLIPLoader", 0, 1, {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                            "clip_name3": "t5xxl_fp16.safetensors"})
    pos, neg = encode_pair(g, (clip, 0), NEKO_PROMPT, NEKO_NEGATIVE, {"drop_quality_tags": True})
    flow = g.add(kit.PATCH, 1, 1, {"shift": 3.0}, model=(ckpt, 0))
    latent = g.add("FlowAnimeEmptyLatentForModel", 1, 2, {"preset": "896x1152 (7:9 portrait)"}, model=(flow, 0))
    sample_decode_save(g, (flow, 0), pos, neg, latent, (ckpt, 2), "nekofantasia", steps=20, cfg=5.0,
                       sampler_name="flowanime_dopri5", scheduler="simple")
    g.add("Note", 0, 2, {"text": "Nekofantasia 0.1 (SD3.5 Medium, rectified flow). Card recipe: Dopri5 (adaptive: "
                                 "'steps' only sets the schedule's end points), CFG 3-7, ~1 MP with sides divisible "
                                 "by 64, no quality tags, no underscores (the normalizer handles both)."})


def nai_v2_fm(g):
    ckpt = g.add("CheckpointLoaderSimple", 0, 0, {"ckpt_name": "nai-v2-fm-alpha.safetensors"})
    pos, neg = encode_pair(g, (ckpt, 1), NAI_PROMPT, NAI_NEGATIVE, {})
    flow = g.add(kit.PATCH, 1, 1, {"shift": 3.5}, model=(ckpt, 0))
    latent = g.add("FlowAnimeEmptyLatentForModel", 1, 2, {"preset": "768x1024 (3:4, nai-v2-fm)"}, model=(flow, 0))
    sample_decode_save(g, (flow, 0), pos, neg, latent, (ckpt, 2), "nai-v2-fm", steps=48, cfg=6.0,
                       sampler_name="euler", scheduler="simple")
    g.add("Note", 0, 1, {"text": "nai-v2-fm-alpha: an SD1.5 UNet trained with a flow-matching objective. ComfyUI loads "
                                 "it as eps; the FlowAnime patch makes it a flow model (shift 3-4). Card recipe: "
                                 "Euler, 48 steps, CFG 6, 768x1024, tag order 1girl, character, series, tags, "
                                 "artists, quality tags."})


def rouwei(g):
    ckpt = g.add("CheckpointLoaderSimple", 0, 0, {"ckpt_name": "rouwei_v0.8_vpred.safetensors"})
    pos, neg = encode_pair(g, (ckpt, 1), ROUWEI_PROMPT, "worst quality, low quality, watermark",
                           {"artists_to_own_chunk": True})
    vpred = g.add("ModelSamplingDiscrete", 1, 1, {"sampling": "v_prediction", "zsnr": True}, model=(ckpt, 0))
    latent = g.add("FlowAnimeEmptyLatentForModel", 1, 2, {"preset": "832x1216 (13:19 portrait)"}, model=(vpred, 0))
    sample_decode_save(g, (vpred, 0), pos, neg, latent, (ckpt, 2), "rouwei", steps=24, cfg=4.0,
                       sampler_name="euler_ancestral", scheduler="normal")
    g.add("Note", 0, 1, {"text": "RouWei 0.8 v-pred (SDXL). Artist tags must sit in their own CLIP chunk: the "
                                 "normalizer moves them behind a BREAK, the encoder starts a chunk there. Card "
                                 "recipe for v-pred: v_prediction + zsnr, Euler a, 20-28 steps, CFG 3-5, ~1 MP "
                                 "with sides divisible by 32."})


def rdbt_anima(g):
    unet = g.add("UNETLoader", 0, 0, {"unet_name": "rdbt_anima_v0.35.safetensors"})
    lora_a = g.add("LoraLoaderModelOnly", 0, 1, {"lora_name": "anima_style_a.safetensors", "strength_model": 0.8},
                   model=(unet, 0))
    lora_b = g.add("LoraLoaderModelOnly", 0, 2, {"lora_name": "anima_style_b.safetensors", "strength_model": 0.5},
                   model=(lora_a, 0))
    clip = g.add("CLIPLoader", 1, 0, {"clip_name": "qwen_3_06b_base.safetensors", "type": "stable_diffusion"})
    vae = g.add("VAELoader", 1, 1, {"vae_name": "qwen_image_vae.safetensors"})
    pos = g.add("FlowAnimeCLIPTextEncodeBreak", 2, 0, {"text": RDBT_PROMPT}, title="Positive", clip=(clip, 0))
    neg = g.add("FlowAnimeCLIPTextEncodeBreak", 2, 1, {"text": ""}, title="Negative (unused at CFG 1)", clip=(clip, 0))
    flow = g.add(kit.PATCH, 1, 2, {"shift": 3.0, "timestep_multiplier": "1"}, model=(lora_b, 0))
    latent = g.add("FlowAnimeEmptyLatentForModel", 2, 2, {"preset": "1024x1024 (1:1)"}, model=(flow, 0))
    sample_decode_save(g, (flow, 0), pos, neg, latent, (vae, 0), "rdbt-anima", steps=24, cfg=1.0,
                       sampler_name="er_sde", scheduler="simple")
    g.add("Note", 3, 1, {"text": "RDBT on Anima: guidance-distilled, so CFG 1 (one model pass per step), 24 steps, "
                                 "stacked style LoRAs, @ trigger words, natural-language captions. Anima feeds its "
                                 "network sigma itself: the FlowAnime patch uses multiplier 1. Needs a ComfyUI with "
                                 "Anima support (newer than 0.3.64)."})


WORKFLOWS = {
    "FlowAnime - Nekofantasia 0.1 (SD3.5, Dopri5).json": nekofantasia,
    "FlowAnime - nai-v2-fm-alpha (SD1.5 flow).json": nai_v2_fm,
    "FlowAnime - RouWei 0.8 vpred (SDXL, BREAK).json": rouwei,
    "FlowAnime - RDBT on Anima (CFG 1, LoRAs).json": rdbt_anima,
}


def build(node_classes) -> dict[str, dict]:
    out = {}
    for name, recipe in WORKFLOWS.items():
        g = UIGraph(node_classes)
        recipe(g)
        out[name] = g.finish()
    return out


def main():
    comfy = kit.find_comfyui()
    if comfy is None:
        sys.exit(kit.NO_COMFYUI_REASON)
    harness = kit.ComfyHarness.start(comfy, PACK_ROOT, Path(tempfile.mkdtemp()))
    target = PACK_ROOT / "example_workflows"
    target.mkdir(exist_ok=True)
    for name, workflow in build(harness.nodes.NODE_CLASS_MAPPINGS).items():
        (target / name).write_text(json.dumps(workflow, indent=2) + "\n")
        print("wrote", target / name)


if __name__ == "__main__":
    main()
