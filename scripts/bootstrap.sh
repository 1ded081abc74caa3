#!/usr/bin/env bash
# Create .venv (if needed) and install empg with a set of extras.
#
#   bash scripts/bootstrap.sh            # everything the test suite exercises (default)
#   bash scripts/bootstrap.sh train      # only what `empg train` needs
#   EMPG_EXTRAS=dev,train bash scripts/bootstrap.sh
#   EMPG_PYTHON=python3.12 bash scripts/bootstrap.sh   # the interpreter .venv is made from
#
# Python: 3.10 or newer (the trl extra needs 3.11+, the verl extra 3.12 or older; outside that
# range they are left out and their tests skip). A .venv made from an older Python, one whose
# interpreter no longer runs, or one without pip is made again.
#
# torch: the project requires torch>=2.4 (any build). By default this script installs
# torch==2.13.0 first, which on our CPU machines resolves to a CPU wheel already on disk (on
# other machines pip may take PyPI's CUDA build of it, several GB); the installed torch is then
# pinned with a constraint so no extra (verl, trl, ...) can swap it. Set EMPG_TORCH_SPEC to
# choose another build, e.g.
#   EMPG_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# or install torch into .venv yourself first (an existing torch is kept).
#
# The alfworld extra builds fast-downward from source: it needs a C++ compiler and cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-${EMPG_EXTRAS:-dev,train,textworld,alfworld,trl,verl}}"
BASE="${EMPG_PYTHON:-python3}"
VERSION_OK='import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'

check_base() {  # the interpreter a new .venv is made from
  if ! command -v "$BASE" >/dev/null 2>&1; then
    echo "[bootstrap] error: '$BASE' not found; install Python >= 3.10 or set EMPG_PYTHON" >&2
    exit 1
  fi
  if ! "$BASE" -c "$VERSION_OK"; then
    echo "[bootstrap] error: empg needs Python >= 3.10; '$BASE' is $("$BASE" -V 2>&1)." \
      "Set EMPG_PYTHON to a newer interpreter" >&2
    exit 1
  fi
}
# an existing .venv is reused only if its interpreter runs and is new enough
if [ -e .venv ] && .venv/bin/python -c "$VERSION_OK" >/dev/null 2>&1; then
  if [ -n "${EMPG_PYTHON:-}" ]; then
    echo "[bootstrap] note: keeping .venv ($(.venv/bin/python -V 2>&1)), so EMPG_PYTHON is" \
      "not used (rm -rf .venv first to change it)"
  fi
elif [ -e .venv ]; then
  check_base
  echo "[bootstrap] .venv does not run a Python >= 3.10: making it again"
  "$BASE" -m venv --clear .venv
else
  check_base
  "$BASE" -m venv .venv
fi
PY=.venv/bin/python
if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "[bootstrap] .venv has no pip: installing it with ensurepip"
  "$PY" -m ensurepip --upgrade >/dev/null || {
    echo "[bootstrap] error: cannot install pip into .venv (on Debian/Ubuntu:" \
      "apt install python3-venv, then rm -rf .venv and run this again)" >&2
    exit 1
  }
fi
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true

TORCH_SPEC="${EMPG_TORCH_SPEC:-torch==2.13.0}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
elif [ -n "${EMPG_TORCH_SPEC:-}" ]; then
  echo "[bootstrap] note: .venv already has torch, so EMPG_TORCH_SPEC is not used" \
    "(uninstall torch from .venv first to change it)"
fi
CONSTRAINTS=.venv/empg-constraints.txt
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINTS"
echo "[bootstrap] installing empg[$EXTRAS] (keeping $(cat "$CONSTRAINTS"))"
"$PY" -m pip install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"
READY="$("$PY" -c 'import torch, empg; print("empg", empg.__version__, "torch", torch.__version__)')"
echo "[bootstrap] ready: $READY"
