"""Test setup.

- The pack's cores are importable as the package `flowanime` without running the ComfyUI entry
  point (`__init__.py`), so unit tests need no ComfyUI.
- The `comfyui` fixture boots a real ComfyUI headless (found by scripts/test.sh, or via
  COMFYUI_PATH) on the CPU, or on the GPU with FLOWANIME_TEST_DEVICE=gpu, and loads this pack with
  ComfyUI's own custom-node loader. Tests that use it are marked `integration` and skip, with the
  reason shown, when no ComfyUI is found.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests' helper modules

if "flowanime" not in sys.modules:
    _pkg = types.ModuleType("flowanime")
    _pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = _pkg

import flowanime_testkit as kit  # noqa: E402

_integration = {"passed": 0, "failed": 0, "skipped": 0, "skip_reason": None}


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    comfy_path = kit.find_comfyui()
    if comfy_path is None:
        pytest.skip(kit.NO_COMFYUI_REASON)
    return kit.ComfyHarness.start(comfy_path, PACK_ROOT, tmp_path_factory.mktemp("comfy"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "comfyui" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report):
    if "integration" not in report.keywords:
        return
    if report.when == "call":
        _integration[report.outcome] += 1
    elif report.when == "setup" and report.outcome != "passed":
        _integration["skipped" if report.skipped else "failed"] += 1
        if report.skipped and _integration["skip_reason"] is None:
            _integration["skip_reason"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


def pytest_terminal_summary(terminalreporter):
    ran = _integration["passed"] + _integration["failed"]
    where = kit.find_comfyui()
    if ran:
        line = (f"FlowAnime integration tests: RAN {ran} against the real ComfyUI at {where} "
                f"({_integration['passed']} passed, {_integration['failed']} failed, {_integration['skipped']} skipped)")
    elif _integration["skipped"]:
        line = f"FlowAnime integration tests: NOT RUN, {_integration['skipped']} skipped: {_integration['skip_reason']}"
    else:
        line = "FlowAnime integration tests: none selected"
    terminalreporter.write_line(line, bold=True)
