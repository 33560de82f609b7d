#!/usr/bin/env bash
# Install mystyle-pl (editable) and its test tools into the current Python environment.
#
# torch: a machine that already has torch keeps it (we pin the installed version so pip
# leaves it alone). A machine without torch and without an NVIDIA GPU gets the CPU build:
# constraints/cpu.txt pins torch==2.13.0, and pip takes the CPU wheel from a local
# find-links folder or from the index in $TORCH_CPU_INDEX (for example
# https://download.pytorch.org/whl/cpu). A GPU machine without torch gets pip's default
# (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

pip_args=(-m pip install --disable-pip-version-check -q)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT

if torch_version=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null); then
  echo "setup: keeping the installed torch $torch_version"
  echo "torch==${torch_version}" > "$constraints"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: no torch installed, NVIDIA GPU found: installing pip's default (CUDA) torch"
  : > "$constraints"
else
  echo "setup: no torch installed, no GPU: installing the CPU build (constraints/cpu.txt)"
  cp constraints/cpu.txt "$constraints"
  if [ -n "${TORCH_CPU_INDEX:-}" ]; then pip_args+=(--extra-index-url "$TORCH_CPU_INDEX"); fi
fi

"$PY" "${pip_args[@]}" -c "$constraints" -e ".[dev]"
"$PY" -c "import torch, lightning, mystyle_pl; print(f'setup: mystyle-pl {mystyle_pl.__version__}, torch {torch.__version__}, lightning {lightning.__version__}')"
