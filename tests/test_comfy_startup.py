"""ComfyUI's own start-up (main.py) imports the pack from custom_nodes/ with nothing to complain about."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("folder", ["FlowAnime", "FlowAnime-main (1)"])
def test_comfyui_startup_log_is_clean_for_the_pack(comfyui, tmp_path, folder):
    """In a folder ComfyUI cannot serve the editor extension from (a second download unpacked with a
    space in its name), the only message is the one that says so and how to fix it."""
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    (tmp_path / "user").mkdir()
    (custom_nodes / folder).symlink_to(comfyui.pack_root, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "main.py", "--cpu", "--quick-test-for-ci", "--base-directory", str(tmp_path)],
        cwd=comfyui.comfy_path, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    import_lines = [line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes/{folder}")]
    assert import_lines, f"the pack is not in ComfyUI's import-times list:\n{log}"
    assert all("IMPORT FAILED" not in line for line in import_lines), log
    ours = [line for line in log.splitlines() if "FlowAnime" in line and line not in import_lines]
    complaints = [line for line in ours if any(w in line.lower() for w in ("warn", "error", "fail", "traceback", "cannot"))]
    if folder == "FlowAnime":
        assert not complaints, log
    else:
        assert len(complaints) == 1 and f"folder is named '{folder}'" in complaints[0], log
        assert "Rename the folder to FlowAnime" in complaints[0]
    assert "Traceback" not in log, log
