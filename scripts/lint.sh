#!/usr/bin/env bash
# Lint with ruff (rules in pyproject.toml), from its own small environment so the test
# environment's hash stays put. FLOWANIME_LINT_VENV overrides where it lives.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUFF_VERSION=0.17.6
venv="${FLOWANIME_LINT_VENV:-$HOME/.cache/flowanime/lint-venv}"
if ! "$venv/bin/ruff" --version 2>/dev/null | grep -qx "ruff $RUFF_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "ruff==$RUFF_VERSION"
fi
exec "$venv/bin/ruff" check .
