"""The ComfyUI boundary: only comfy_adapter/ touches ComfyUI.

Every module is parsed with `ast` and every Import/ImportFrom node is checked, at any depth
(inside functions, methods, try blocks, conditionals), so a lazy `import comfy...` in a function
counts as much as one at the top.
"""

import ast

import pytest
from conftest import PACK_ROOT

# Top-level modules and packages of ComfyUI (0.3.64 and newer) a custom node could import.
COMFY_MODULES = {
    "comfy", "comfy_extras", "comfy_execution", "comfy_api", "comfy_api_nodes", "comfy_config", "nodes",
    "folder_paths", "server", "execution", "node_helpers", "latent_preview", "main", "app", "api_server",
    "protocol", "utils", "comfyui_version", "cuda_malloc", "hook_breaker_ac10a0", "new_updater",
    "comfy_aimdo", "comfy_kitchen",
}
# The cores: torch and plain Python (DEVELOPERS.md), importable and testable without ComfyUI.
CORE_PATHS = ["samplers", "model_sampling/flow.py", "prompt", "resolution"]
# Attributes of ComfyUI's model patcher, model, model config, CLIP and tokenizer objects. A core that
# reads one of these is reaching into a ComfyUI object; comfy_adapter/ hands it over instead.
COMFY_OBJECT_ATTRIBUTES = {
    "inner_model", "model_sampling", "model_config", "latent_format", "sampling_settings", "diffusion_model",
    "get_model_object", "add_object_patch", "model_options", "tokenizer", "cond_stage_model",
    "tokenize_with_weights", "inv_vocab", "tokens_start", "pad_to_max_length", "max_length", "min_length",
    "min_padding", "encode_from_tokens_scheduled", "spacial_downscale_ratio", "latent_channels",
}
ADAPTER = "comfy_adapter"
NOT_SHIPPED = {"tests", "scripts", "bench", ".ci"}  # run beside ComfyUI, never loaded by it


def pack_modules(*parts):
    paths = []
    for part in parts or (".",):
        path = PACK_ROOT / part
        paths += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [p for p in paths if not any(folder in NOT_SHIPPED or folder.startswith(".")  # a local .venv, an editor's
                                        for folder in p.relative_to(PACK_ROOT).parts[:-1])]


def imported_modules(tree):
    """(line, absolute module name) for every import anywhere in the tree; relative imports are the pack's own."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module or ""
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield node.lineno, str(node.args[0].value)


def comfy_imports(path, root=PACK_ROOT):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(root)}:{line} imports {name}"
            for line, name in imported_modules(tree) if name.split(".")[0] in COMFY_MODULES]


def reaches_into_comfy_objects(path, root=PACK_ROOT):
    """Private attributes of anything but self/cls, and ComfyUI object attributes, read or set,
    also through getattr/setattr/hasattr with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        name = None
        if isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in ("self", "cls"):
                name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            name = node.args[1].value
        if name is None:
            continue
        private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
        if private or name in COMFY_OBJECT_ATTRIBUTES:
            found.append(f"{path.relative_to(root)}:{node.lineno} .{name}")
    return found


@pytest.mark.parametrize("path", pack_modules(*CORE_PATHS), ids=lambda p: str(p.relative_to(PACK_ROOT)))
def test_cores_import_no_comfyui_module_anywhere(path):
    assert comfy_imports(path) == []


@pytest.mark.parametrize("path", pack_modules(*CORE_PATHS, "nodes"), ids=lambda p: str(p.relative_to(PACK_ROOT)))
def test_cores_and_nodes_reach_into_no_comfyui_object(path):
    assert reaches_into_comfy_objects(path) == []


def test_only_the_adapter_imports_comfyui():
    outside = [p for p in pack_modules() if p.relative_to(PACK_ROOT).parts[0] != ADAPTER]
    assert [hit for p in outside for hit in comfy_imports(p)] == []


def test_the_adapter_imports_comfyui_only_inside_functions():
    """The pack must import without ComfyUI (and ComfyUI-Manager scans it without one)."""
    for path in pack_modules(ADAPTER):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert [name for line, name in imported_modules(ast.Module(body=top, type_ignores=[]))
                if name.split(".")[0] in COMFY_MODULES] == [], path


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The detectors themselves: a nested import, an importlib call, a private attribute, a getattr."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import torch\n"
        "def f(clip):\n"
        "    if True:\n"
        "        try:\n"
        "            from comfy.samplers import KSAMPLER\n"
        "        except ImportError:\n"
        "            import importlib; importlib.import_module('folder_paths')\n"
        "    clip.tokenizer._private = 1\n"
        "    return getattr(clip, 'cond_stage_model'), self_like._x\n"
    )

    imports = comfy_imports(probe, root=tmp_path)
    reaches = reaches_into_comfy_objects(probe, root=tmp_path)
    assert [h.split(" imports ")[1] for h in imports] == ["comfy.samplers", "folder_paths"]
    assert {h.split(" .")[1] for h in reaches} == {"tokenizer", "_private", "cond_stage_model", "_x"}
