# Sourced by test.sh and bench.sh: finds ComfyUI and prepares the virtual environment (reused while
# no requirements file changed). Sets: pack_root, comfy (empty if none), venv.

set -o pipefail  # the pip install below relies on it
pack_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$pack_root"

is_comfyui() { [ -n "$1" ] && [ -f "$1/comfy/samplers.py" ] && [ -f "$1/nodes.py" ]; }
comfy=""
for candidate in "${COMFYUI_PATH:-}" "$pack_root/../.." "$HOME/comfy/ComfyUI"; do
  if is_comfyui "$candidate"; then comfy=$(cd "$candidate" && pwd); break; fi
done

python=${PYTHON:-python3}
venv=${FLOWANIME_VENV:-$HOME/.cache/flowanime/test-venv}
req_files=(requirements.txt tests/requirements.txt tests/constraints.txt)
[ -n "$comfy" ] && req_files+=("$comfy/requirements.txt")
stamp=$( { "$python" --version 2>&1; cat "${req_files[@]}"; } | sha256sum | cut -c1-16)

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.flowanime-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "FlowAnime tests: preparing the test environment in $venv (first run downloads torch, several GB)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  pip_args=(-q -c tests/constraints.txt -r requirements.txt -r tests/requirements.txt torch torchvision torchaudio)
  [ -n "$comfy" ] && pip_args+=(-r "$comfy/requirements.txt")
  # pip's exit status decides, not the filter's: a failed install stops here, after pip's message.
  # The filter drops one harmless line and must not fail when nothing is left (pipefail, PIPESTATUS).
  pip_status=0
  "$venv/bin/python" -m pip install "${pip_args[@]}" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } || pip_status=${PIPESTATUS[0]}
  if [ "$pip_status" -ne 0 ]; then
    echo "FlowAnime tests: pip install failed (exit $pip_status), see pip's message above; nothing was run" >&2
    exit "$pip_status"
  fi
  "$venv/bin/python" -c "import torch, torchvision" # fail here, not in the middle of the suite
  echo "$stamp" > "$venv/.flowanime-stamp"
fi

