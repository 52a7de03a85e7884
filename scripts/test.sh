#!/usr/bin/env bash
# Run the test suite (unit + real headless ComfyUI) in the project venv; extra args go to pytest, e.g.
# `bash scripts/test.sh -m "not host and not slow"` for the fast tier (docs/development.md: test tiers).
#
# Hosts: by default ComfyUI 0.3.75 (vendored from PyPI, see scripts/env.sh). `PAPERNODES_HOST=0.33` runs
# against upstream ComfyUI 0.33.0 instead: its source tarball (PAPERNODES_HOST_TARBALL, default
# ../shared/hosts/comfyui-0.33.0.tar.gz beside the checkout) is unpacked once into PAPERNODES_HOSTS_DIR and
# gets a venv of its own (PAPERNODES_VENV_033), pinned by requirements-comfyui-0.33.lock.
# Exit code 3: the requested host is not available on this machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
case "${PAPERNODES_HOST:-0.3.75}" in
  0.3.75) ;;
  0.33)
    tarball="${PAPERNODES_HOST_TARBALL:-$ROOT/../shared/hosts/comfyui-0.33.0.tar.gz}"
    hosts="${PAPERNODES_HOSTS_DIR:-$HOME/.cache/comfyui-papernodes/hosts}"
    if [ ! -f "$hosts/ComfyUI-0.33.0/main.py" ]; then
      [ -f "$tarball" ] || { echo "[test] ComfyUI 0.33 not available: no $tarball" >&2; exit 3; }
      mkdir -p "$hosts" && tar xzf "$tarball" -C "$hosts"
    fi
    export COMFYUI_PATH="$hosts/ComfyUI-0.33.0"
    export PAPERNODES_VENV="${PAPERNODES_VENV_033:-$HOME/.cache/comfyui-papernodes/venv-0.33}"
    export PAPERNODES_LOCK="$ROOT/requirements-comfyui-0.33.lock"
    ;;
  *) echo "[test] PAPERNODES_HOST must be 0.3.75 or 0.33, got ${PAPERNODES_HOST}" >&2; exit 2 ;;
esac
eval "$(bash scripts/env.sh)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COMFYUI_PATH="${COMFYUI_PATH:-$COMFYUI}"
echo "[test] host: $COMFYUI_PATH" >&2
exec "$VENV/bin/python" -m pytest "$@"
