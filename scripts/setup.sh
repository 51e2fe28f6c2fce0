#!/usr/bin/env bash
# Create the virtual environment and install medvlab with everything it needs, on a fresh machine.
# torch is installed first and pinned, so no later package can pull a multi-GB CUDA build of torch
# onto a CPU machine. Override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0+cu128" on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-dev}"

# Colin27 (Debian mricron-data) is the real test brain of the segmentation tests and demo; best effort,
# as root only (tests that need it say how to install it and skip without it).
if [ ! -f /usr/share/mricron/templates/ch2.nii.gz ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -qq mricron-data >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq mricron-data >/dev/null)) \
    || echo "apt-get install mricron-data failed; Colin27 tests will be skipped"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet -e ".[${EXTRAS}]"
"$VENV/bin/python" - <<'PY'
import torch, transformers, pydicom, medvlab
print(f"medvlab {medvlab.__version__}: torch {torch.__version__}, transformers {transformers.__version__}, pydicom {pydicom.__version__}")
PY
touch "$VENV/.installed-${EXTRAS//,/-}"
