"""The editor extension's text preparation against the frontend's own: what the live counter counts must
be what the node receives when the prompt is queued. The frontend's processDynamicPrompt (read from the
installed comfyui-frontend-package, with its random choice fixed to the first option) and the
extension's withoutComments + firstChoices run side by side in Node.js on random prompts made of the
characters that matter (braces, bars, backslashes, comment marks, line ends). Skips, with the reason
shown, without Node.js or the frontend package."""

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PACK_ROOT

EXTENSION = PACK_ROOT / "web" / "flowanime.js"


def frontend_process_dynamic_prompt() -> str:
    spec = importlib.util.find_spec("comfyui_frontend_package")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("no comfyui-frontend-package installed (ComfyUI's requirements.txt brings it)")
    assets = Path(list(spec.submodule_search_locations)[0]) / "static" / "assets"
    for bundle in sorted(assets.glob("*.js")):
        text = bundle.read_text(encoding="utf-8", errors="replace")
        start = text.find("function processDynamicPrompt(input)")
        if start < 0:
            continue
        end = text.find("\n}\n", start)
        # the bundle names its functions through __name(...) for stack traces: define it as a no-op
        return "const __name = (f) => f;\n" + text[start:end + 3]
    pytest.skip(f"processDynamicPrompt not found in {assets}")


def extension_function(source: str, name: str) -> str:
    start = source.index(f"function {name}(")
    return source[start:source.index("\n}\n", start) + 3]


def test_the_counter_counts_what_the_frontend_queues(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js (Debian: apt-get install nodejs)")
    frontend = frontend_process_dynamic_prompt()
    source = EXTENSION.read_text(encoding="utf-8")
    line_end = re.search(r"^const LINE_END = .*$", source, re.M).group(0)
    script = "\n".join([line_end, extension_function(source, "withoutComments"),
                        extension_function(source, "firstChoices"), frontend, r"""
let seed = 2026;
const next = (m) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % m; };
Math.random = () => 0;  // the frontend picks options[Math.floor(Math.random() * n)]: the first
const alphabet = ["a", "b", " ", ",", "{", "}", "|", "\\", "/", "*", "\n", "(", ")", ":"];
const mismatches = [];
let choices = 0;
for (let n = 0; n < 100000; n++) {
  let s = "";
  for (let k = next(40); k > 0; k--) s += alphabet[next(alphabet.length)];
  const ours = firstChoices(withoutComments(s));
  const theirs = processDynamicPrompt(s);
  if (ours.choices) choices++;
  if (ours.text !== theirs && mismatches.length < 5) mismatches.push([s, theirs, ours.text]);
}
console.log(JSON.stringify({ mismatches, choices }));
"""])
    path = tmp_path / "compare.mjs"
    path.write_text(script, encoding="utf-8")
    result = json.loads(subprocess.run([node, str(path)], capture_output=True, text=True, check=True, timeout=120).stdout)
    assert result["mismatches"] == []
    assert result["choices"] > 1000  # the random prompts did offer choices
