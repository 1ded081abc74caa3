#!/usr/bin/env bash
# Create .venv (if needed) and install empg with its test and environment extras.
#
# torch: the project requires torch>=2.4 (any build). By default this script installs
# torch==2.13.0 first, which on our CPU machines resolves to a wheel already on disk, so pip
# never pulls the multi-GB CUDA build. Set EMPG_TORCH_SPEC to choose another build, e.g.
#   EMPG_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# or EMPG_TORCH_SPEC=skip to keep whatever torch the venv already has.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EMPG_EXTRAS:-dev,train,textworld,alfworld,trl}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
TORCH_SPEC="${EMPG_TORCH_SPEC:-torch==2.13.0}"
if [ "$TORCH_SPEC" != "skip" ] && ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
fi
echo "[bootstrap] installing empg[$EXTRAS]"
"$PY" -m pip install -q -e ".[$EXTRAS]"
echo "[bootstrap] ready: $("$PY" -c 'import torch, empg; print("empg", empg.__version__, "torch", torch.__version__)')"
