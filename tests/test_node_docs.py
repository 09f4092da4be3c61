"""The graph editor's node help pages (web/docs/<node id>.md, which ComfyUI's frontend shows in its
node help panel instead of a page built from the tooltips): one per node, titled with the node's
display name, and the inputs and outputs part exactly what scripts/build_node_docs.py writes from
the node's definition now. Needs no ComfyUI; tests/test_comfy_browser.py opens the pages in the
real editor."""

import ast
import importlib.util
import re

import pytest
from conftest import PACK_ROOT


def load_builder():
    spec = importlib.util.spec_from_file_location("build_node_docs", PACK_ROOT / "scripts" / "build_node_docs.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder


BUILDER = load_builder()
NODES = BUILDER.node_classes()


def display_names() -> dict:
    return ast.literal_eval(BUILDER.declared("NODE_DISPLAY_NAME_MAPPINGS"))


def test_every_node_has_a_page_and_no_page_is_left_over():
    assert sorted(p.stem for p in (PACK_ROOT / "web" / "docs").glob("*.md")) == sorted(NODES)
    assert [p for p in (PACK_ROOT / "web" / "docs").rglob("*") if p.is_dir()] == []  # no per-locale folders yet


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_the_page_is_titled_and_current(node_id):
    """Rerun `python scripts/build_node_docs.py` after changing a node's inputs or tooltips."""
    path = PACK_ROOT / "web" / "docs" / f"{node_id}.md"
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# {display_names()[node_id]}"
    assert text == BUILDER.page(path, NODES[node_id])


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_every_input_and_output_says_what_it_is(node_id):
    """The generated tables take their words from the tooltips, which the editor also shows on hover."""
    node = NODES[node_id]
    for section in node.INPUT_TYPES().values():
        for name, spec in section.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), (node_id, name)
    assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES) and all(node.OUTPUT_TOOLTIPS)


def cells(row: str) -> list[str]:
    """A markdown table row's cells, split at the pipes that no backslash escapes."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_the_tables_keep_their_columns_whatever_the_tooltips_say(node_id):
    node = NODES[node_id]
    rows = BUILDER.generated_part(node).split("## Outputs")
    inputs = [cells(r) for r in rows[0].splitlines() if r.startswith("| `")]
    outputs = [cells(r) for r in rows[1].splitlines() if r.startswith("| `")]
    assert [len(c) for c in inputs] == [4] * sum(len(s) for s in node.INPUT_TYPES().values())
    assert [len(c) for c in outputs] == [3] * len(node.RETURN_TYPES)


def stand_in_node(required: dict, return_type: str, output_tooltip: str) -> type:
    """A node class with these required inputs and one output, for the page builder."""
    return type("Node", (), {"RETURN_TYPES": (return_type,), "OUTPUT_TOOLTIPS": (output_tooltip,),
                             "INPUT_TYPES": classmethod(lambda cls: {"required": required})})


def test_markdown_in_a_tooltip_reads_as_written():
    """A tooltip's `|`, `*` or `_` would end a cell or start emphasis in the rendered page."""
    Node = stand_in_node({"text": ("STRING", {"tooltip": "{a|b} picks one; s*t / (1 + (s-1)*t); log10_rtol <x>"})},
                         "STRING", "a|b")
    part = BUILDER.generated_part(Node)
    assert r"{a\|b} picks one; s\*t / (1 + (s-1)\*t); log10\_rtol \<x\>" in part
    assert [len(cells(r)) for r in part.splitlines() if r.startswith("| `")] == [4, 3]


def test_ranges_read_as_a_person_writes_them():
    """Python's `1e-05` and the seed's twenty digits are what repr gives, not what a reader expects."""
    Node = stand_in_node({
        "floor": ("FLOAT", {"default": 0.001, "min": 1e-05, "max": 0.5, "tooltip": "f"}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "s"}),
        "steps": ("INT", {"default": 48, "min": 1, "max": 10000, "tooltip": "t"}),
        "shift": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "tooltip": "h"})}, "INT", "n")
    part = BUILDER.generated_part(Node)
    assert "`0.001` (0.00001 to 0.5)" in part
    assert "`0` (0 to 2^64 - 1)" in part
    assert "`48` (1 to 10000)" in part and "`3` (0 to 100)" in part
    assert not re.search(r"\de-\d|\d{12}", part)
