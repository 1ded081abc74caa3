#!/usr/bin/env bash
# Create .venv (if needed) and install empg with a set of extras.
#
#   bash scripts/bootstrap.sh            # everything the test suite exercises (default)
#   bash scripts/bootstrap.sh train      # only what `empg train` needs
#   EMPG_EXTRAS=dev,train bash scripts/bootstrap.sh
#
# torch: the project requires torch>=2.4 (any build). By default this script installs
# torch==2.13.0 first, which on our CPU machines resolves to a CPU wheel already on disk (on
# other machines pip may take PyPI's CUDA build of it, several GB); the installed torch is then
# pinned with a constraint so no extra (verl, trl, ...) can swap it. Set EMPG_TORCH_SPEC to
# choose another build, e.g.
#   EMPG_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# or install torch into .venv yourself first (an existing torch is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-${EMPG_EXTRAS:-dev,train,textworld,alfworld,trl,verl}}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
TORCH_SPEC="${EMPG_TORCH_SPEC:-torch==2.13.0}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
fi
CONSTRAINTS=.venv/empg-constraints.txt
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINTS"
echo "[bootstrap] installing empg[$EXTRAS] (keeping $(cat "$CONSTRAINTS"))"
"$PY" -m pip install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"
echo "[bootstrap] ready: $("$PY" -c 'import torch, empg; print("empg", empg.__version__, "torch", torch.__version__)')"
