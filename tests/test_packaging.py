"""Packaging facts the Comfy registry and ComfyUI-Manager rely on."""

import ast
import re
import sys

import pytest
from conftest import PACK_ROOT

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # on the 3.10 floor: the tomli backport where it is installed
    tomllib = pytest.importorskip("tomli")

# ComfyUI's Python floor: pyproject.toml of ComfyUI 0.38.1 (Comfy-Org/ComfyUI@20ca544) says >=3.10;
# 0.3.64 said >=3.9. The pack supports both, and the floor is the higher one.
NEWER_COMFYUI_PYTHON_FLOOR = (3, 10)


def load_pyproject():
    return tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_project_table_follows_the_registry_rules():
    project = load_pyproject()["project"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name) and "comfyui" not in name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["urls"]["Repository"].startswith("https://")


def test_tool_comfy_has_the_registry_fields():
    comfy = load_pyproject()["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert {"Icon", "includes", "requires-comfyui"} <= set(comfy)


def test_dependencies_come_from_requirements_txt_without_torch():
    pyproject = load_pyproject()
    assert "dependencies" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    requirements = [
        line.split("#")[0].strip() for line in (PACK_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    names = {re.split(r"[<>=!~\[; ]", r)[0].lower() for r in requirements if r}
    assert not names & {"torch", "torchvision", "torchaudio"}, "the user's ComfyUI brings torch"


def test_node_mappings_are_a_literal_the_manager_can_scan():
    """ComfyUI-Manager finds a pack's node ids by reading NODE_CLASS_MAPPINGS = {...} from source."""
    tree = ast.parse((PACK_ROOT / "__init__.py").read_text(encoding="utf-8"))
    mapping = next(
        node.value for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "NODE_CLASS_MAPPINGS" for t in node.targets)
    )
    assert isinstance(mapping, ast.Dict)
    keys = [k.value for k in mapping.keys]
    assert keys and all(k.startswith("FlowAnime") for k in keys)


def test_entry_point_imports_no_comfyui_module_at_top_level():
    """__init__.py and the node modules must import without ComfyUI (import-light entry point)."""
    cores = ("nodes", "model_sampling", "samplers", "prompt", "resolution")
    for path in [PACK_ROOT / "__init__.py", *(p for d in cores for p in (PACK_ROOT / d).glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            comfy_modules = {"comfy", "nodes", "folder_paths", "comfy_extras", "execution", "server"}
            assert not [n for n in names if n.split(".")[0] in comfy_modules], path


def python_floor() -> tuple[int, int]:
    spec = load_pyproject()["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", spec)
    assert match, f"requires-python should be a plain floor, got {spec!r}"
    return 3, int(match.group(1))


def test_one_python_floor_for_pyproject_ruff_and_comfyui():
    floor = python_floor()
    assert load_pyproject()["tool"]["ruff"]["target-version"] == f"py3{floor[1]}"
    assert floor == NEWER_COMFYUI_PYTHON_FLOOR
    import flowanime_testkit as kit

    comfy = kit.find_comfyui()
    if comfy is not None:  # the checkout's own floor is never above ours
        spec = tomllib.loads((comfy / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
        assert tuple(int(p) for p in re.findall(r"\d+", spec)[:2]) <= floor, spec


def test_every_module_parses_at_the_python_floor():
    """Syntax newer than the floor (except*, PEP 695 generics, ...) fails here even on a newer Python."""
    floor = python_floor()
    assert sys.version_info[:2] >= floor, "the test environment runs below the pack's own floor"
    for path in PACK_ROOT.rglob("*.py"):
        if {".git", "node_modules"} & set(path.parts):
            continue
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=floor)


def test_licence_is_gpl3_or_later_text_and_metadata():
    assert load_pyproject()["project"]["license"] == {"text": "GPL-3.0-or-later"}
    text = (PACK_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE") and "Version 3, 29 June 2007" in text
    assert "(at your option) any later version" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_registry_archive_leaves_out_only_what_runs_nowhere_in_comfyui():
    """`.comfyignore` drops development folders from `comfy node pack`'s archive. Nothing the pack
    loads in ComfyUI may sit there: no shipped module imports from them."""
    ignored = [line.strip().rstrip("/") for line in (PACK_ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    assert set(ignored) == {"tests", "bench", "scripts", ".ci", "pytest.ini"}
    shipped = [p for p in PACK_ROOT.rglob("*.py")
               if p.relative_to(PACK_ROOT).parts[0] not in ignored and not p.relative_to(PACK_ROOT).parts[0].startswith(".")]
    assert any(p.name == "__init__.py" and p.parent == PACK_ROOT for p in shipped)
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (path.parent / ("../" * (node.level - 1)) / (node.module or "").replace(".", "/")).resolve()
                top = target.relative_to(PACK_ROOT.resolve()).parts[:1]
                assert not top or top[0] not in ignored, (path, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"bench", "tests", "scripts", "conftest"} for n in names), (path, names)
    for folder in ("web", "example_workflows", "prompt/data"):
        assert (PACK_ROOT / folder).is_dir() and folder.split("/")[0] not in ignored


FOLDER_NAMES = ["FlowAnime", "flowanime", "ComfyUI-FlowAnime", "FlowAnime_v0.1", "FlowAnime(x)", "Flow+Anime",
                "Flow&Anime", "Flow'A", "Flow~A", "Flow@A", "Flow,A", "Flow!A", "Flow$A", "Flow=A", "Flow;A",
                "Flow Anime", "FlowAnime-main (1)", "FlowAnimeö", "フローアニメ", "Flow[1]", "Flow{1}", "Flow%20A",
                "Flow%A", "Flow#A", "Flow^A", "Flow`A", "Flow|A", 'Flow"A', "Flow<A>", "Flow\\A", "Flow?A"]


def test_the_folder_warning_names_exactly_the_folders_comfyui_cannot_serve(tmp_path):
    """The pack warns about its folder's name exactly where aiohttp, serving the folder as ComfyUI does
    (`web.static('/extensions/' + name, dir)`, requested at the quoted URL ComfyUI's /extensions lists),
    does not find the extension's file."""
    import asyncio
    import urllib.parse

    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from flowanime.comfy_adapter.web_folder import folder_name_problem

    app = web.Application()
    for number, name in enumerate(FOLDER_NAMES):
        folder = tmp_path / str(number)
        folder.mkdir()
        (folder / "flowanime.js").write_text("// test", encoding="utf-8")
        app.add_routes([web.static("/extensions/" + name, folder)])

    async def served():
        async with TestClient(TestServer(app)) as client:
            found = {}
            for name in FOLDER_NAMES:
                response = await client.get(f"/extensions/{urllib.parse.quote(name)}/flowanime.js")
                found[name] = response.status == 200
            return found

    found = asyncio.run(served())
    assert {name: folder_name_problem(name) is None for name in FOLDER_NAMES} == found, aiohttp.__version__
    assert not found["FlowAnime-main (1)"] and found["FlowAnime"]


def test_shell_scripts_keep_lf_endings_on_any_checkout():
    """Every tracked shell script (a .sh file or one that starts with a shebang) is checked out with LF endings, also where git
    converts text to CRLF (core.autocrlf=true, the Git for Windows default)."""
    import subprocess

    if not (PACK_ROOT / ".git").exists():
        pytest.skip("not a git checkout (a registry archive has no .gitattributes to check)")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PACK_ROOT, capture_output=True, check=True).stdout
    scripts = [name for name in tracked.decode().split("\0")
               if name and (PACK_ROOT / name).is_file()
               and (name.endswith(".sh") or (PACK_ROOT / name).read_bytes()[:2] == b"#!")]
    assert {".ci/run", "scripts/test.sh", "scripts/env.sh"} <= set(scripts)
    attrs = subprocess.run(["git", "check-attr", "eol", "--", *scripts], cwd=PACK_ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert [line for line in attrs if not line.endswith(": eol: lf")] == []
