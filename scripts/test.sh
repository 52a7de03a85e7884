#!/usr/bin/env bash
# Run the test suite (unit + real headless ComfyUI) in the project venv; extra args go to pytest, e.g.
# `bash scripts/test.sh -m "not host and not slow"` for the fast tier (docs/development.md: test tiers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
eval "$(bash scripts/env.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COMFYUI_PATH="${COMFYUI_PATH:-$COMFYUI}"
exec "$VENV/bin/python" -m pytest "$@"
