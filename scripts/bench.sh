#!/usr/bin/env bash
# FlowAnime's sampler benchmark (bench/bench_samplers.py) in the test environment. Arguments go to
# the script, e.g. --competitors DIR ... or --quick.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[ -n "$comfy" ] && export COMFYUI_PATH="$comfy"
exec "$venv/bin/python" bench/bench_samplers.py "$@"
