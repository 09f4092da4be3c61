"""The bundled workflows as a person sees them, without ComfyUI: the layout checker that the generator
(scripts/build_example_workflows.py) runs on every file, the committed files' layout, the latent
node's size widgets, and one thumbnail per workflow where the template browser looks for it."""

import importlib.util
import json
import re

import pytest
from conftest import PACK_ROOT

WORKFLOW_FILES = sorted((PACK_ROOT / "example_workflows").glob("*.json"))


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_example_workflows", PACK_ROOT / "scripts" / "build_example_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def box(node_id, x, y, w=300, h=100, outputs=1, inputs=1):
    return {"id": node_id, "type": f"T{node_id}", "pos": [x, y], "size": [w, h],
            "inputs": [{"name": f"in{i}", "type": "X", "link": None} for i in range(inputs)],
            "outputs": [{"name": f"out{i}", "type": "X", "links": []} for i in range(outputs)]}


def problems(builder, nodes, links):
    return builder.layout_problems(nodes, links, {n["id"]: [] for n in nodes}, {n["id"]: 1 for n in nodes})


def test_layout_checker_accepts_a_clean_row(builder):
    nodes = [box(1, 0, 0), box(2, 400, 0), box(3, 800, 0)]
    assert problems(builder, nodes, [[1, 1, 0, 2, 0, "X"], [2, 2, 0, 3, 0, "X"]]) == []


def test_layout_checker_finds_overlaps_including_title_bars_and_badges(builder):
    # 130 px below a 100 px node: the title bar (30) and the badge above it (20) reach into the gap
    assert any("closer than" in p for p in problems(builder, [box(1, 0, 0), box(2, 0, 130)], []))
    assert problems(builder, [box(1, 0, 0), box(2, 0, 180)], []) == []


def test_layout_checker_finds_backward_links_and_links_behind_nodes(builder):
    backward = problems(builder, [box(1, 400, 0), box(2, 0, 200)], [[1, 1, 0, 2, 0, "X"]])
    assert any("runs backwards" in p for p in backward)
    behind = problems(builder, [box(1, 0, 0), box(2, 400, -20), box(3, 800, 0)], [[1, 1, 0, 3, 0, "X"]])
    assert any("runs behind 2" in p for p in behind)


def test_spline_is_the_editors_bezier(builder):
    points = builder.spline((0, 0), (400, 300), samples=4)
    assert points[0] == (0, 0) and points[-1] == (400, 300)
    # control points a quarter of the distance (500) out: (125, 0) and (275, 300); midpoint of the cubic
    assert points[2] == pytest.approx((0.125 * 0 + 0.375 * 125 + 0.375 * 275 + 0.125 * 400, 0.375 * 300 + 0.125 * 300))


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_committed_layout_has_no_overlap_backward_link_or_link_behind_a_node(builder, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    nodes, links = workflow["nodes"], workflow["links"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            assert not builder.overlaps(builder.node_rect(a, 10), builder.node_rect(b, 10)), (a["id"], b["id"])
    by_id = {n["id"]: n for n in nodes}
    for _id, src, _slot, dst, _dst_slot, _type in links:
        assert by_id[dst]["pos"][0] > by_id[src]["pos"][0] + by_id[src]["size"][0], (src, dst)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_latent_size_widgets_show_the_presets_size(path):
    for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
        if node["type"] == "FlowAnimeEmptyLatentForModel":
            preset, width, height = node["widgets_values"][:3]
            size = re.match(r"(\d+)x(\d+) ", preset)
            if size:  # named in the preset's own label, e.g. "896x1152 (7:9 portrait)"
                assert (width, height) == (int(size[1]), int(size[2])), (preset, width, height)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_each_workflow_has_a_small_jpeg_thumbnail_named_as_the_template_browser_asks(path):
    # the frontend asks for /api/workflow_templates/<pack>/<workflow name>.jpg (mediaSubtype "jpg")
    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file(), f"{thumbnail.name} missing: python scripts/check_workflows_in_browser.py --write-thumbnails"
    data = thumbnail.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and len(data) < 100_000


def test_no_thumbnail_without_its_workflow():
    assert {p.stem for p in (PACK_ROOT / "example_workflows").glob("*.jpg")} == {p.stem for p in WORKFLOW_FILES}
