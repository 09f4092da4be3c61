"""Drive a real ComfyUI headless on the CPU: boot it, load this pack with ComfyUI's own custom-node
loader, generate tiny random-weight models its real loaders detect, run API-format graphs through
its validator and executor.

Nothing here is downloaded: every model is built from ComfyUI's own network classes with seeded
random weights and saved to a temporary models folder.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
NODE_PREFIX = "FlowAnime"
NO_COMFYUI_REASON = (
    "no ComfyUI found: set COMFYUI_PATH, put the pack in ComfyUI/custom_nodes/, or check ComfyUI out at ~/comfy/ComfyUI"
)

# File names of the generated stand-ins, per ComfyUI model folder.
SD15_UNET = "flowanime_tiny_sd15_unet.safetensors"
SD3_MMDIT = "flowanime_tiny_sd3_mmdit.safetensors"
CLIP_L = "flowanime_random_clip_l.safetensors"
SD15_LORA = "flowanime_tiny_sd15_lora.safetensors"


def _is_comfyui(path) -> bool:
    return bool(path) and (Path(path) / "comfy" / "samplers.py").is_file() and (Path(path) / "nodes.py").is_file()


def find_comfyui() -> Path | None:
    """COMFYUI_PATH, the ComfyUI enclosing this pack (custom_nodes/<pack>), then ~/comfy/ComfyUI."""
    for candidate in (
        os.environ.get("FLOWANIME_COMFYUI"),
        os.environ.get("COMFYUI_PATH"),
        PACK_ROOT.parent.parent,
        Path.home() / "comfy" / "ComfyUI",
    ):
        if _is_comfyui(candidate):
            return Path(candidate).resolve()
    return None


# ----------------------------------------------------------------------------------------------
# Tiny random-weight models, built from ComfyUI's own network classes.


def fill_random_(module, seed: int):
    """Seeded weights with O(1) activations: fan-in scaled normals, unit norm scales, small biases."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if tensor.ndim >= 2:
                value = torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor[0].numel())
            elif name.endswith("bias"):
                value = torch.randn(tensor.shape, generator=gen) * 0.02
            else:
                value = torch.ones(tensor.shape)
            tensor.copy_(value)
    return module


def tiny_sd15_unet_config() -> dict:
    """An SD1.5-shaped UNet (320 channels, 768-dim context, so ComfyUI detects SD15) cut to one
    level with one res block and one transformer block."""
    return dict(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
        channel_mult=[1], transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=1,
        context_dim=768, use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
        adm_in_channels=None, num_heads=8, num_head_channels=-1, use_checkpoint=False,
        use_temporal_resblock=False, use_temporal_attention=False,
    )


def make_tiny_sd15_unet():
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**tiny_sd15_unet_config(), operations=comfy.ops.disable_weight_init)
    return fill_random_(unet, seed=15).state_dict()


def make_tiny_sd3_mmdit():
    """An SD3 MMDiT of depth 2 (hidden 128), taking the 4096-dim context and 2048-dim pooled
    vector ComfyUI's SD3 text encoder produces."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    mmdit = OpenAISignatureMMDITWrapper(
        input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=2048,
        context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
        pos_embed_max_size=32, num_patches=1024, pos_embed_scaling_factor=None,
        operations=comfy.ops.disable_weight_init,
    )
    return fill_random_(mmdit, seed=3).state_dict()


def make_random_clip_l():
    """CLIP-L text model with random weights. ComfyUI builds CLIP-L with its fixed 12-layer config,
    so the weights are full-size (fp16, ~250 MB); only the values are made up."""
    import json

    import comfy.clip_model
    import comfy.ops
    import torch

    config_path = Path(comfy.clip_model.__file__).parent / "sd1_clip_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model = comfy.clip_model.CLIPTextModel(config, torch.float32, "cpu", comfy.ops.disable_weight_init)
    state = fill_random_(model, seed=77).state_dict()
    state = {k: v.to(torch.float16) for k, v in state.items()}
    state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return state


def make_tiny_sd15_lora(unet_state: dict, rank: int = 4):
    """A kohya-format LoRA on the UNet's attention and feed-forward linears."""
    import torch

    gen = torch.Generator().manual_seed(4)
    lora = {}
    suffixes = (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight", ".ff.net.2.weight")
    targets = [k for k in unet_state if k.endswith(suffixes)]
    for key in targets:
        out_f, in_f = unet_state[key].shape
        name = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
        lora[f"{name}.lora_down.weight"] = torch.randn((rank, in_f), generator=gen) / math.sqrt(in_f)
        lora[f"{name}.lora_up.weight"] = torch.randn((out_f, rank), generator=gen) / math.sqrt(rank)
        lora[f"{name}.alpha"] = torch.tensor(float(rank))
    return lora


def make_sd_vae():
    """ComfyUI's default SD1.x VAE (full shape, ~84M parameters) with random weights."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    return fill_random_(AutoencoderKL(ddconfig=ddconfig, embed_dim=4), seed=8).state_dict()


def make_sd15_checkpoint():
    """A single-file SD1.5 checkpoint (what CheckpointLoaderSimple loads): the tiny UNet, the random
    CLIP-L and the random VAE under the usual prefixes. fp16 to keep the file small."""
    import torch

    state = {f"model.diffusion_model.{k}": v for k, v in make_tiny_sd15_unet().items()}
    clip = make_random_clip_l()
    clip.pop("text_projection.weight")  # SD1.5 checkpoints carry none
    state.update({f"cond_stage_model.transformer.{k}": v for k, v in clip.items()})
    state.update({f"first_stage_model.{k}": v for k, v in make_sd_vae().items()})
    return {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in state.items()}


@contextmanager
def shallow_text_encoders():
    """While active, ComfyUI builds CLIP text models 3 layers deep and T5 2 layers deep with a narrow
    feed-forward, widths unchanged. TripleCLIPLoader builds CLIP-G and T5-XXL at full depth (T5-XXL
    alone is 4.7B parameters), so SD3 stand-ins are generated and loaded under this patch."""
    import comfy.clip_model
    import comfy.text_encoders.t5

    clip_init, t5_init = comfy.clip_model.CLIPTextModel.__init__, comfy.text_encoders.t5.T5.__init__

    def shallow_clip(self, config, *args, **kwargs):
        clip_init(self, {**config, "num_hidden_layers": 3}, *args, **kwargs)

    def shallow_t5(self, config, *args, **kwargs):
        t5_init(self, {**config, "num_layers": 2, "d_ff": 64}, *args, **kwargs)

    comfy.clip_model.CLIPTextModel.__init__ = shallow_clip
    comfy.text_encoders.t5.T5.__init__ = shallow_t5
    try:
        yield
    finally:
        comfy.clip_model.CLIPTextModel.__init__ = clip_init
        comfy.text_encoders.t5.T5.__init__ = t5_init


def make_sd3_text_encoders():
    """clip_l, clip_g and t5xxl state dicts for TripleCLIPLoader; call inside shallow_text_encoders().
    CLIP-G gets a placeholder layer-30 key: ComfyUI's SD3 encoder routes a file to CLIP-G by it."""
    import json

    import comfy.clip_model
    import comfy.ops
    import comfy.text_encoders.t5
    import torch

    def config(module, name):
        return json.loads((Path(module.__file__).parent / name).read_text(encoding="utf-8"))

    ops = comfy.ops.disable_weight_init
    half = lambda sd: {k: v.to(torch.float16) for k, v in sd.items()}  # noqa: E731
    clip_l = fill_random_(comfy.clip_model.CLIPTextModel(config(comfy.clip_model, "sd1_clip_config.json"),
                                                         torch.float32, "cpu", ops), seed=21).state_dict()
    clip_g = fill_random_(comfy.clip_model.CLIPTextModel(config(comfy.clip_model, "clip_config_bigg.json"),
                                                         torch.float32, "cpu", ops), seed=22).state_dict()
    clip_g = {**clip_g, "text_model.encoder.layers.30.mlp.fc1.weight": torch.zeros(1)}
    t5 = fill_random_(comfy.text_encoders.t5.T5(config(comfy.text_encoders.t5, "t5_config_xxl.json"),
                                                torch.float32, "cpu", ops), seed=23).state_dict()
    return half(clip_l), half(clip_g), half(t5)


def make_sd3_checkpoint():
    """A single-file SD3 checkpoint: the tiny MMDiT and a random 16-channel SD3-style VAE."""
    import torch
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig},
    )
    state = {f"model.diffusion_model.{k}": v for k, v in make_tiny_sd3_mmdit().items()}
    state.update({f"first_stage_model.{k}": v for k, v in fill_random_(vae, seed=9).state_dict().items()})
    return {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in state.items()}


def write_models(models_dir: Path):
    from safetensors.torch import save_file

    (models_dir / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (models_dir / "text_encoders").mkdir(parents=True, exist_ok=True)
    (models_dir / "loras").mkdir(parents=True, exist_ok=True)
    unet = make_tiny_sd15_unet()
    save_file(unet, str(models_dir / "diffusion_models" / SD15_UNET))
    save_file(make_tiny_sd15_lora(unet), str(models_dir / "loras" / SD15_LORA))
    save_file(make_tiny_sd3_mmdit(), str(models_dir / "diffusion_models" / SD3_MMDIT))
    save_file(make_random_clip_l(), str(models_dir / "text_encoders" / CLIP_L))


# ----------------------------------------------------------------------------------------------
# API-format graphs.

PATCH = "FlowAnimeModelSamplingRectifiedFlow"
SAMPLER_NODE = "FlowAnimeSamplerRungeKuttaODE"
PATCH_DEFAULTS = dict(shift=3.0, timestep_multiplier="auto", custom_multiplier=1000.0, timestep_convention="sigma",
                      velocity="noise - data", resolution_shift="off", base_resolution=1024)

FAMILIES = {
    # unet file, CLIPLoader type, empty-latent node, latent channels
    "sd15": (SD15_UNET, "stable_diffusion", "EmptyLatentImage", 4),
    "sd3": (SD3_MMDIT, "sd3", "EmptySD3LatentImage", 16),
}


def txt2img(family, sampler="euler", scheduler="simple", steps=4, patch=None, loras=(), lora_after_patch=False,
            width=64, height=64, batch=2, cfg=4.0, seed=7, custom_sampler=None):
    """API-format graph: UNETLoader [-> LoRA] -> our patch [-> LoRA] -> KSampler -> SaveLatent.
    custom_sampler: inputs of our SAMPLER node, to sample with SamplerCustomAdvanced instead."""
    from comfy_execution.graph_utils import GraphBuilder

    unet, clip_type, empty_latent, _ = FAMILIES[family]
    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=unet, weight_dtype="default").out(0)
    clip = g.node("CLIPLoader", clip_name=CLIP_L, type=clip_type).out(0)
    positive = g.node("CLIPTextEncode", clip=clip, text="1girl, solo, looking at viewer").out(0)
    negative = g.node("CLIPTextEncode", clip=clip, text="lowres, bad anatomy").out(0)
    latent = g.node(empty_latent, width=width, height=height, batch_size=batch).out(0)

    def add_loras(m):
        for name in loras:
            m = g.node("LoraLoaderModelOnly", model=m, lora_name=name, strength_model=1.0).out(0)
        return m

    if not lora_after_patch:
        model = add_loras(model)
    if patch is not None:
        model = g.node(PATCH, model=model, **{**PATCH_DEFAULTS, **patch}).out(0)
    if lora_after_patch:
        model = add_loras(model)
    if custom_sampler is None:
        samples = g.node("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                         scheduler=scheduler, positive=positive, negative=negative, latent_image=latent,
                         denoise=1.0).out(0)
    else:
        guider = g.node("CFGGuider", model=model, positive=positive, negative=negative, cfg=cfg).out(0)
        sigmas = g.node("BasicScheduler", model=model, scheduler=scheduler, steps=steps, denoise=1.0).out(0)
        noise = g.node("RandomNoise", noise_seed=seed).out(0)
        ode = g.node(SAMPLER_NODE, **custom_sampler).out(0)
        samples = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=ode, sigmas=sigmas,
                         latent_image=latent).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix=f"latents/{family}")
    return g.finalize(), save.id


# ----------------------------------------------------------------------------------------------
# The harness.


class _HeadlessServer:
    """The few server attributes PromptExecutor uses; records what it would send to the browser."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class GraphInvalid(AssertionError):
    pass


@dataclass
class RunResult:
    success: bool
    outputs: dict
    messages: list = field(default_factory=list)

    @property
    def error(self) -> dict | None:
        for event, data in self.messages:
            if event == "execution_error":
                return data
        return None


def make_executor(executor_class, server):
    """A non-caching PromptExecutor, built for the signature this ComfyUI has.

    0.3.64: PromptExecutor(server, cache_type=False, cache_size=None). Newer (execution.py@04e2a91):
    PromptExecutor(server, cache_type=False, cache_args=None, asset_manager=None), and every run
    reads cache_args["ram"] and cache_args["ram_inactive"] (GiB of headroom; 0 asks for none).
    asset_manager None gives its own default; execution.py@cb707e9 has cache_args and no asset_manager.
    Decided by the signature, not the version string.
    """
    params = inspect.signature(executor_class).parameters
    kwargs = {"cache_type": False}
    if "cache_args" in params:
        kwargs["cache_args"] = {"ram": 0, "ram_inactive": 0}
    return executor_class(server, **kwargs)


def requested_test_device() -> str:
    """FLOWANIME_TEST_DEVICE: "cpu" (the default) or "gpu", checked before ComfyUI is booted, since
    ComfyUI without --cpu on a machine with no GPU fails deep inside its own import."""
    import torch

    device = os.environ.get("FLOWANIME_TEST_DEVICE", "cpu").strip().lower()
    if device not in ("cpu", "gpu"):
        raise RuntimeError(f"FLOWANIME_TEST_DEVICE must be cpu or gpu, got {device!r}")
    has_gpu = (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
               or torch.backends.mps.is_available())
    if device == "gpu" and not has_gpu:
        raise RuntimeError("FLOWANIME_TEST_DEVICE=gpu, but torch sees no CUDA, XPU or MPS device: unset it to test on the CPU")
    return device


class ComfyHarness:
    _instance: ComfyHarness | None = None

    def __init__(self, comfy_path: Path, pack_root: Path, workdir: Path):
        self.comfy_path = comfy_path
        self.pack_root = pack_root
        self.workdir = workdir
        self.models_dir = workdir / "models"
        self.output_dir = workdir / "output"
        self.load_records: list = []
        self.pack_loaded = False
        # ComfyUI's loader registers a pack folder under its path with dots replaced.
        self.pack_module = str(pack_root).replace(".", "_x_")

    @classmethod
    def start(cls, comfy_path: Path, pack_root: Path, workdir: Path) -> ComfyHarness:
        if cls._instance is None:
            harness = cls(comfy_path, pack_root, workdir)
            harness._boot()
            cls._instance = harness
        return cls._instance

    def _boot(self):
        sys.path.insert(0, str(self.comfy_path))
        from comfy.cli_args import args

        # Before comfy.model_management is imported. FLOWANIME_TEST_DEVICE=gpu leaves ComfyUI to pick
        # the accelerator and its half-precision weights, as a user's install does.
        args.cpu = requested_test_device() == "cpu"
        # As main.py does, before nodes.py puts ComfyUI/comfy on sys.path (where comfy/utils.py would
        # then shadow ComfyUI's utils package and comfy_extras/nodes_images.py would fail to import).
        import folder_paths
        import utils.extra_config  # noqa: F401

        for sub in ("input", "output", "temp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(self.output_dir))
        folder_paths.set_input_directory(str(self.workdir / "input"))
        folder_paths.set_temp_directory(str(self.workdir / "temp"))
        for kind in ("diffusion_models", "text_encoders", "loras", "checkpoints", "vae"):
            (self.models_dir / kind).mkdir(parents=True, exist_ok=True)
            folder_paths.add_model_folder_path(kind, str(self.models_dir / kind), is_default=True)

        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        write_models(self.models_dir)

        base_names = set(nodes.NODE_CLASS_MAPPINGS)
        capture = _Capture()
        root = logging.getLogger()
        root.addHandler(capture)
        try:
            self.pack_loaded = asyncio.run(
                nodes.load_custom_node(str(self.pack_root), ignore=base_names, module_parent="custom_nodes")
            )
        finally:
            root.removeHandler(capture)
        self.load_records = capture.records

    # -- access to ComfyUI ------------------------------------------------------------------

    @property
    def nodes(self):
        import nodes

        return nodes

    def node_class(self, class_type: str):
        return self.nodes.NODE_CLASS_MAPPINGS[class_type]

    def pack_submodule(self, dotted: str):
        """A module of this pack as ComfyUI loaded it (e.g. "comfy_adapter.model_sampling")."""
        return sys.modules[f"{self.pack_module}.{dotted}"]

    def our_node_ids(self) -> list[str]:
        return sorted(k for k in self.nodes.NODE_CLASS_MAPPINGS if k.startswith(NODE_PREFIX))

    # -- running graphs ---------------------------------------------------------------------

    def validate(self, prompt: dict):
        import execution

        return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict, expect_success: bool = True) -> RunResult:
        """Validate and execute an API-format graph with ComfyUI's own validator and executor."""
        import execution

        valid, error, outputs, node_errors = self.validate(prompt)
        if not valid:
            raise GraphInvalid(f"ComfyUI rejected the graph: {error} {node_errors}")
        server = _HeadlessServer()
        executor = make_executor(execution.PromptExecutor, server)
        executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        result = RunResult(executor.success, executor.history_result.get("outputs", {}), server.messages + executor.status_messages)
        if expect_success and not result.success:
            raise AssertionError(f"graph failed: {result.error}")
        return result

    def saved_latent(self, result: RunResult, node_id: str):
        """The tensor a SaveLatent node wrote."""
        from safetensors.torch import load_file

        entry = result.outputs[node_id]["latents"][0]
        path = self.output_dir / entry["subfolder"] / entry["filename"]
        return load_file(str(path))["latent_tensor"]


# ----------------------------------------------------------------------------------------------
# UI-format workflows (what the graph editor saves and example_workflows/ holds).

FRONTEND_ONLY_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODEL_FOLDERS = {  # loader widget -> the ComfyUI model folder its file list comes from
    "ckpt_name": "checkpoints", "clip_name": "text_encoders", "clip_name1": "text_encoders",
    "clip_name2": "text_encoders", "clip_name3": "text_encoders", "lora_name": "loras", "vae_name": "vae",
    "unet_name": "diffusion_models",
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def input_specs(node_cls) -> list[tuple[str, str, dict, bool]]:
    """(name, type, options, is_widget) for a node's required then optional inputs, in order."""
    spec = node_cls.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind = entry[0]
            options = entry[1] if len(entry) > 1 else {}
            if isinstance(kind, (list, tuple)):
                options = {**options, "options": list(kind)}
                kind = "COMBO"
            out.append((name, kind, options, kind in WIDGET_TYPES))
    return out


def optional_inputs(node_cls) -> set[str]:
    return set(node_cls.INPUT_TYPES().get("optional", {}))


def widget_default(kind: str, options: dict):
    """The value the graph editor gives a widget the saved workflow has no value for."""
    if "default" in options:
        return options["default"]
    if kind == "COMBO":
        return options["options"][0] if options["options"] else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def has_control_widget(name: str, kind: str, options: dict) -> bool:
    """The graph editor adds a 'control after generate' value after seed-like INT widgets."""
    return kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed"))


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to the API format, as the graph editor does on Queue: linked
    inputs from the links table, widget values matched to the node's widget inputs in order.

    Like the editor, it tolerates a workflow saved on another ComfyUI version: an optional widget the
    file has no value for (a ComfyUI that added it, e.g. TripleCLIPLoader's `device`) gets its
    default, and values past a core node's last widget (saved where the node had more) are ignored.
    A missing required widget, or a leftover value on one of our nodes (whose inputs we control),
    is an error.
    """
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_NODES or node.get("mode", 0) in (2, 4):
            continue
        cls = node_classes[node["type"]]
        optional = optional_inputs(cls)
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs = {}
        for name, kind, options, is_widget in input_specs(cls):
            if is_widget:
                if values:
                    inputs[name] = values.pop(0)
                    if has_control_widget(name, kind, options) and values:
                        values.pop(0)
                elif name in optional or "default" in options:
                    # a workflow saved before this widget existed, or by a ComfyUI without it: the editor
                    # gives it its default
                    if name not in linked:
                        inputs[name] = widget_default(kind, options)
                else:
                    raise AssertionError(f"node {node['id']} ({node['type']}): no widget value left for '{name}'")
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        if values and node["type"].startswith(NODE_PREFIX):
            raise AssertionError(f"node {node['id']} ({node['type']}): {len(values)} widget values left over: {values}")
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api
