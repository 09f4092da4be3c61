#!/usr/bin/env bash
# FlowAnime's test command: sets up a test environment (reused while nothing changed) and runs the
# whole suite. Integration tests run against a real ComfyUI found at, in order:
#   $COMFYUI_PATH, the ComfyUI enclosing this pack (custom_nodes/<pack>), ~/comfy/ComfyUI.
# Extra arguments go to pytest. FLOWANIME_VENV overrides where the environment lives.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if [ -n "$comfy" ]; then
  export FLOWANIME_COMFYUI="$comfy"
  export COMFYUI_PATH="$comfy"  # the benchmark code some tests run looks there (and in subprocesses)
  echo "FlowAnime tests: using ComfyUI at $comfy"
else
  export FLOWANIME_COMFYUI=""
  echo "FlowAnime tests: no ComfyUI found (COMFYUI_PATH, enclosing custom_nodes/, ~/comfy/ComfyUI); integration tests will skip"
fi

# --rootdir=tests: the pack's own folder holds ComfyUI's entry point (__init__.py, relative imports);
# rooted there, pytest would import it as a package, which fails in a clone whose folder name is no
# Python identifier (ComfyUI-FlowAnime, fresh-clone): every test would error.
exec "$venv/bin/python" -m pytest --rootdir=tests "$@"
