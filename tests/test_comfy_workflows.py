"""Every bundled workflow (example_workflows/, ComfyUI's template browser) against the real ComfyUI."""

import importlib.util
import json

import flowanime_testkit as kit
import pytest
from conftest import PACK_ROOT

WORKFLOW_FILES = sorted((PACK_ROOT / "example_workflows").glob("*.json"))


def load_builder():
    spec = importlib.util.spec_from_file_location("build_example_workflows", PACK_ROOT / "scripts" / "build_example_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_workflow_per_seed_checkpoint_and_one_for_the_calibrated_schedule():
    assert len(WORKFLOW_FILES) == 5
    for model in ("Nekofantasia", "nai-v2-fm", "RouWei", "RDBT"):
        assert any(model in p.name for p in WORKFLOW_FILES), model
    assert any("calibrated schedule" in p.name for p in WORKFLOW_FILES)
    assert all(p.parent.name == "example_workflows" for p in WORKFLOW_FILES)  # one level deep, as ComfyUI looks


@pytest.fixture(scope="module")
def stand_in_models(comfyui):
    """Empty files with the names the workflows use: enough for validation, which checks names."""
    for path in WORKFLOW_FILES:
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] in kit.FRONTEND_ONLY_NODES:
                continue
            for (name, *_), value in zip(_widget_specs(comfyui, node), node["widgets_values"]):
                if name in kit.MODEL_FOLDERS and value:
                    target = comfyui.models_dir / kit.MODEL_FOLDERS[name] / value
                    if not target.exists():
                        target.write_bytes(b"")
    return True


def _widget_specs(comfyui, node):
    """Widget inputs in widgets_values order, with the control-after-generate slot as its own entry."""
    out = []
    for name, kind, options, is_widget in kit.input_specs(comfyui.node_class(node["type"])):
        if is_widget:
            out.append((name, kind, options))
            if kit.has_control_widget(name, kind, options):
                out.append(("control_after_generate", "COMBO", {"options": ["fixed", "increment", "decrement", "randomize"]}))
    return out


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_structure_links_and_node_types(comfyui, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert workflow["version"] == 0.4 and {"nodes", "links", "last_node_id", "last_link_id"} <= set(workflow)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert len(nodes) == len(workflow["nodes"])
    for node in workflow["nodes"]:
        assert node["type"] in comfyui.nodes.NODE_CLASS_MAPPINGS or node["type"] in kit.FRONTEND_ONLY_NODES, node["type"]
    for link_id, src, src_slot, dst, dst_slot, link_type in workflow["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert out["type"] == link_type == (inp["type"] if inp["type"] not in kit.WIDGET_TYPES else link_type)
        if src_slot < len(getattr(comfyui.node_class(nodes[src]["type"]), "RETURN_TYPES", ())):
            assert comfyui.node_class(nodes[src]["type"]).RETURN_TYPES[src_slot] == link_type
    for node in workflow["nodes"]:  # every required non-widget input is connected
        if node["type"] in kit.FRONTEND_ONLY_NODES:
            continue
        required = node_required_links(comfyui, node)
        connected = {i["name"] for i in node["inputs"] if i["link"] is not None}
        assert required <= connected, (node["type"], required - connected)


def node_required_links(comfyui, node):
    cls = comfyui.node_class(node["type"])
    required = cls.INPUT_TYPES().get("required", {})
    return {name for name, _kind, _options, is_widget in kit.input_specs(cls) if name in required and not is_widget}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_widget_values_fit_the_declared_inputs(comfyui, stand_in_models, path):
    for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
        if node["type"] in kit.FRONTEND_ONLY_NODES:
            continue
        specs = _widget_specs(comfyui, node)
        values = node["widgets_values"]
        # Optional widgets come last and are written only when set (ComfyUI versions differ in them).
        optional = kit.optional_inputs(comfyui.node_class(node["type"]))
        required = [spec for spec in specs if spec[0] not in optional]
        assert len(required) <= len(values) <= len(specs), (node["type"], values)
        for (name, kind, options), value in zip(specs, values):
            if kind == "COMBO":
                assert value in _fresh_options(comfyui, node, name, options), (node["type"], name, value)
            elif kind in ("INT", "FLOAT"):
                allowed = int if kind == "INT" else (int, float)
                assert isinstance(value, allowed) and not isinstance(value, bool), (node["type"], name, value)
                assert options.get("min", -float("inf")) <= value <= options.get("max", float("inf")), (node["type"], name, value)
            elif kind == "BOOLEAN":
                assert isinstance(value, bool)
            elif kind == "STRING":
                assert isinstance(value, str)


def _fresh_options(comfyui, node, name, options):
    if name == "control_after_generate":
        return options["options"]
    for n, _kind, opts, _ in kit.input_specs(comfyui.node_class(node["type"])):  # re-read: file lists change
        if n == name:
            return opts["options"]
    return []


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_comfyuis_validator_accepts_the_workflow(comfyui, stand_in_models, path):
    api = kit.ui_to_api(json.loads(path.read_text(encoding="utf-8")), comfyui.nodes.NODE_CLASS_MAPPINGS)
    valid, error, outputs, node_errors = comfyui.validate(api)
    assert valid, (error, node_errors)
    assert outputs, "no output node"


def test_committed_workflows_match_the_recipes(comfyui, stand_in_models):
    """The files are generated from the node definitions: rerun scripts/build_example_workflows.py when
    a node's inputs change."""
    built = load_builder().build(comfyui.nodes.NODE_CLASS_MAPPINGS, comfyui.nodes.NODE_DISPLAY_NAME_MAPPINGS)
    assert sorted(built) == [p.name for p in WORKFLOW_FILES]
    for path in WORKFLOW_FILES:
        assert json.loads(path.read_text(encoding="utf-8")) == built[path.name], path.name
    assert len({w["id"] for w in built.values()}) == len(built)  # the editor tells open workflows apart by id


def run_workflow_small(comfyui, path, width, height):
    """Execute a workflow file with its latent size and step count cut for the CPU; return the image
    and the executor's result."""
    from PIL import Image

    api = kit.ui_to_api(json.loads(path.read_text(encoding="utf-8")), comfyui.nodes.NODE_CLASS_MAPPINGS)
    for node in api.values():
        if node["class_type"] == "FlowAnimeEmptyLatentForModel":
            node["inputs"].update(preset="custom", width=width, height=height)
        if node["class_type"] in ("KSampler", "FlowAnimeCalibratedSchedule"):
            node["inputs"]["steps"] = 4
        if node["class_type"] == "FlowAnimeCalibratedSchedule":  # a random network's field is rough: a loose teacher
            node["inputs"].update(teacher_log10_rtol=-1.5, check=False)
    result = comfyui.run(api)
    saved = [img for out in result.outputs.values() for img in out.get("images", [])]
    assert len(saved) == 1
    return Image.open(comfyui.output_dir / saved[0]["subfolder"] / saved[0]["filename"]), result


def save_sd3_stand_ins(comfyui, path):
    """The tiny MMDiT and a random SD3 VAE as the workflow's checkpoint; shallow random CLIP-L, CLIP-G
    and T5-XXL under its TripleCLIPLoader's names (call inside kit.shallow_text_encoders())."""
    from safetensors.torch import save_file

    nodes = json.loads(path.read_text(encoding="utf-8"))["nodes"]
    ckpt = next(n for n in nodes if n["type"] == "CheckpointLoaderSimple")["widgets_values"][0]
    encoders = next(n for n in nodes if n["type"] == "TripleCLIPLoader")["widgets_values"]
    save_file(kit.make_sd3_checkpoint(), str(comfyui.models_dir / "checkpoints" / ckpt))
    for name, state in zip(encoders, kit.make_sd3_text_encoders()):
        save_file(state, str(comfyui.models_dir / "text_encoders" / name))


def test_sd35_workflow_runs_end_to_end_to_an_image(comfyui):
    """The Nekofantasia workflow file (CheckpointLoaderSimple + TripleCLIPLoader, our flow patch,
    normalizer, BREAK encoder, flowanime_dopri5), executed on stand-ins of the names it uses: the tiny
    MMDiT and a random SD3 VAE as the checkpoint, shallow random CLIP-L, CLIP-G and T5-XXL."""
    path = next(p for p in WORKFLOW_FILES if "Dopri5" in p.name)
    with kit.shallow_text_encoders():
        save_sd3_stand_ins(comfyui, path)
        image, _ = run_workflow_small(comfyui, path, 64, 128)
    assert image.size == (64, 128) and image.format == "PNG"


def test_calibrated_schedule_workflow_runs_end_to_end_and_reports_the_calibration(comfyui):
    """The calibrated-schedule workflow (SamplerCustomAdvanced with exp_multistep on the Calibrated
    Schedule node's sigmas, CFGGuider, RandomNoise) on the SD3 stand-ins, cut to 4 calls and a loose teacher.
    The schedule node's report reaches the editor (its ui text) and names the calls the calibration spent."""
    path = next(p for p in WORKFLOW_FILES if "calibrated schedule" in p.name)
    with kit.shallow_text_encoders():
        save_sd3_stand_ins(comfyui, path)
        image, result = run_workflow_small(comfyui, path, 64, 128)
    assert image.size == (64, 128) and image.format == "PNG"
    schedule_id = next(n["id"] for n in json.loads(path.read_text(encoding="utf-8"))["nodes"] if n["type"] == "FlowAnimeCalibratedSchedule")
    report = result.outputs[str(schedule_id)]["text"][0]
    assert "calls" in report, report


def test_sd15_workflow_runs_end_to_end_to_an_image(comfyui):
    """The nai-v2-fm workflow file, executed by ComfyUI's executor on a stand-in SD1.5 checkpoint of the
    same name (tiny UNet, random CLIP-L and VAE), with its size and step count cut for the CPU."""
    from safetensors.torch import save_file

    path = next(p for p in WORKFLOW_FILES if "nai-v2-fm" in p.name)
    nodes = json.loads(path.read_text(encoding="utf-8"))["nodes"]
    ckpt = next(n for n in nodes if n["type"] == "CheckpointLoaderSimple")["widgets_values"][0]
    save_file(kit.make_sd15_checkpoint(), str(comfyui.models_dir / "checkpoints" / ckpt))
    image, _ = run_workflow_small(comfyui, path, 64, 96)
    assert image.size == (64, 96) and image.format == "PNG"
