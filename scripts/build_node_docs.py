"""Write the inputs and outputs part of the graph editor's node help pages (web/docs/<node id>.md).

ComfyUI's frontend shows `WEB_DIRECTORY/docs/<node id>.md` in its node help panel instead of its own
page built from the node's description and tooltips. Each page here has a written part (what the node
is for, the model cards' settings) above GENERATED_MARK, and below it a table of inputs and outputs
built from the node's definition (tooltips, defaults, ranges), so the page cannot drift from the
node. Needs no ComfyUI:

    python scripts/build_node_docs.py          # rewrite the generated parts
    python scripts/build_node_docs.py --check  # exit 1 if a page is stale or missing
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import types
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
DOCS = PACK_ROOT / "web" / "docs"
GENERATED_MARK = "<!-- Below: written by scripts/build_node_docs.py from the node's definition. Edit the tooltips there. -->"

# What a markdown table cell must escape to read as written (a `|` would end the cell).
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_|<>[]#"})


def declared(name: str) -> ast.Dict:
    """The dict literal __init__.py assigns to `name` (NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)."""
    tree = ast.parse((PACK_ROOT / "__init__.py").read_text(encoding="utf-8"))
    return next(node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == name for t in node.targets))


def node_classes() -> dict[str, type]:
    """NODE_CLASS_MAPPINGS as __init__.py declares it, without running __init__.py (it registers samplers)."""
    if "flowanime" not in sys.modules:
        package = types.ModuleType("flowanime")
        package.__path__ = [str(PACK_ROOT)]
        sys.modules["flowanime"] = package
    tree = ast.parse((PACK_ROOT / "__init__.py").read_text(encoding="utf-8"))
    modules = {alias.asname or alias.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    mapping = declared("NODE_CLASS_MAPPINGS")
    classes = {}
    for key, value in zip(mapping.keys, mapping.values):
        module = importlib.import_module("flowanime" + "." + modules[value.id].lstrip("."))
        classes[key.value] = getattr(module, value.id)
    return classes


def _cell(text) -> str:
    return " ".join(str(text).split()).translate(_MARKDOWN_SPECIAL)


def _number(value) -> str:
    """As a reader writes it: `0.00001`, not Python's `1e-05`; `2^64 - 1`, not twenty digits."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15f").rstrip("0").rstrip(".") if abs(value) >= 1e-9 else repr(value)
    if value >= 2**32 and (value + 1) & value == 0:  # the seed's 0xffffffffffffffff
        return f"2^{value.bit_length()} - 1"
    return str(value)


def _setting(kind, options: dict, optional: bool) -> str:
    """The default and the allowed values, as the widget offers them."""
    if isinstance(kind, (list, tuple)):
        choices = ", ".join(f"`{choice}`" for choice in kind)
        return f"`{options.get('default', kind[0])}`; one of {choices}"
    if kind in ("INT", "FLOAT"):
        text = f"`{_number(options['default'])}`" if "default" in options else ""
        if "min" in options and "max" in options:
            text += f" ({_number(options['min'])} to {_number(options['max'])})"
        return text.strip()
    if kind == "BOOLEAN":
        return "on" if options.get("default") else "off"
    if kind == "STRING":
        return f"`{options['default']}`" if options.get("default") else "empty"
    return "not connected" if optional else "connect one"


def generated_part(node: type) -> str:
    inputs = node.INPUT_TYPES()
    lines = ["## Inputs", "", "| input | type | default | what it does |", "|---|---|---|---|"]
    for section in ("required", "optional"):
        for name, spec in inputs.get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            type_name = "choice" if isinstance(kind, (list, tuple)) else kind
            # An optional widget is only "optional" to an API prompt; to a user, an optional link is.
            linked = not isinstance(kind, (list, tuple)) and kind not in ("INT", "FLOAT", "BOOLEAN", "STRING")
            where = " (optional)" if section == "optional" and linked else ""
            where += " (advanced)" if options.get("advanced") else ""
            setting = _setting(kind, options, optional=section == "optional")
            lines.append(f"| `{name}`{where} | {type_name} | {setting} | {_cell(options.get('tooltip', ''))} |")
    names = getattr(node, "RETURN_NAMES", None) or tuple(kind.lower() for kind in node.RETURN_TYPES)
    tips = getattr(node, "OUTPUT_TOOLTIPS", ("",) * len(names))
    lines += ["", "## Outputs", "", "| output | type | what it is |", "|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {_cell(tip)} |" for name, kind, tip in zip(names, node.RETURN_TYPES, tips)]
    return "\n".join(lines) + "\n"


def page(path: Path, node: type) -> str:
    written = path.read_text(encoding="utf-8").split(GENERATED_MARK)[0].rstrip() if path.exists() else f"# {path.stem}"
    return f"{written}\n\n{GENERATED_MARK}\n\n{generated_part(node)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale or missing pages, write nothing")
    args = parser.parse_args()
    stale = []
    for node_id, node in node_classes().items():
        path = DOCS / f"{node_id}.md"
        text = page(path, node)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    if stale:
        print(("stale: " if args.check else "wrote: ") + ", ".join(stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
