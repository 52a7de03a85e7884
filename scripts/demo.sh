#!/usr/bin/env bash
# Main job: run every example workflow headless in a real ComfyUI on the pack's built-in demo models.
# Outputs land in ./output. Builds the venv on first use (scripts/env.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
eval "$(bash scripts/env.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$VENV/bin/python" scripts/comfy_host.py run-workflows --comfyui "$COMFYUI" --out ./output \
  --base ./.work/demo_base "$@"
