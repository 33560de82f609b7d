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

"$PY" "${pip_args[@]}" -c "$constraints" -e ".[dev,app,browser]"

# The app's browser tests (tests/test_app.py) drive a headless Chromium through chromedriver.
# Installed from the system's packages where missing and possible (root + apt); otherwise those
# tests skip with the reason. MYSTYLE_SKIP_BROWSER=1 skips this step.
if [ -z "${MYSTYLE_SKIP_BROWSER:-}" ] && ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (apt) for the app's browser tests"
    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }) \
      || echo "setup: could not install chromium; the browser tests will skip"
  else
    echo "setup: no chromedriver and no root apt-get: the app's browser tests will skip (install chromium + chromium-driver)"
  fi
fi
"$PY" -c "import torch, lightning, mystyle_pl; print(f'setup: mystyle-pl {mystyle_pl.__version__}, torch {torch.__version__}, lightning {lightning.__version__}')"
