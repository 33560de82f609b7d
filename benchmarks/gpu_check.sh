#!/usr/bin/env bash
# The GPU check (make gpu-check): from a fresh clone on a GPU machine to a complete table in at most
# 8 minutes, set-up included. Writes OUT_DIR/gpu_check.json, gpu_check.md (the README's "GPU figures"),
# gpu_check.log and setup.log.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--no-setup] [benchmarks/gpu_check.py options]
#
# OUT_DIR defaults to outputs/gpu_check. Set-up: scripts/setup.sh (keeps the machine's torch), capped
# at 100 s; when it fails or runs out of time the check goes on with the package from this checkout
# and the table says so. --no-setup skips it (an installed checkout, or the CPU test:
# --no-setup --device cpu --tiny). Every other option goes to benchmarks/gpu_check.py (--help there):
# --parts, --caps, --work-dir, --lpips-reference, --device, --tiny.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=${PYTHON:-python3}
SETUP_CAP_S=100  # benchmarks/gpu_check.py: SETUP_CAP_S

out=outputs/gpu_check
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  out=$1
  shift
fi
setup=1
args=()
for a in "$@"; do
  case $a in
    --no-setup) setup=0 ;;
    -h|--help) exec "$PY" benchmarks/gpu_check.py --help ;;
    *) args+=("$a") ;;
  esac
done
mkdir -p "$out" || exit 1

# A machine without a package index answers pip at once instead of after minutes of retries.
export PIP_RETRIES=${PIP_RETRIES:-1} PIP_TIMEOUT=${PIP_TIMEOUT:-15} PIP_DISABLE_PIP_VERSION_CHECK=1

setup_args=()
if [ "$setup" = 1 ]; then
  echo "[gpu_check] set-up: scripts/setup.sh (at most ${SETUP_CAP_S} s; log $out/setup.log)"
  t0=$(date +%s)
  timeout -k 5 "$SETUP_CAP_S" bash scripts/setup.sh >"$out/setup.log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=done ;;
    124|137) status=timed_out ;;
    *) status=failed ;;
  esac
  echo "[gpu_check] set-up: $status in ${seconds} s (exit code $rc)"
  setup_args=(--setup-status "$status" --setup-seconds "$seconds" --setup-rc "$rc")
else
  setup_args=(--setup-status "skipped (--no-setup)")
fi

exec "$PY" benchmarks/gpu_check.py --out "$out" --started-at "$start" "${setup_args[@]}" ${args[@]+"${args[@]}"}
