#!/usr/bin/env bash
# Tune a personal prior on each shared album's refs/ and evaluate it on the held-out gt.png
# (synthetic x8 / x16 super-resolution) and the real degraded.png/gt.png pair, personal vs
# generic vs bicubic. CPU quick settings by default (configs/fit/cpu_quick.yaml); pass
# FIT_CONFIG=configs/fit/mystyle.yaml TRAINER=configs/trainer/gpu.yaml on a GPU.
#
#   bash scripts/evaluate_albums.sh [SHARED_DATA] [OUT]      (defaults: ../shared/data, outputs/albums)
#   python scripts/summarize_evaluations.py outputs/albums/*/eval > outputs/albums/summary.md
#
# Every stage is skipped when its output exists (re-running resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-${MYSTYLE_SHARED_DATA:-../shared/data}}
OUT=${2:-outputs/albums}
PYTHON=${PYTHON:-python3}
FIT_CONFIG=${FIT_CONFIG:-configs/fit/cpu_quick.yaml}
TRAINER=${TRAINER:-}
PRESET=${PRESET:-quick}   # projection budget (mystyle_pl/tasks/presets.py); PRESET=pplus for the paper's P+
ALBUMS=${ALBUMS:-$(ls "$DATA/albums")}
TASKS=${TASKS:-invert,superres}   # held-out inversion, x8 / x16 (the real degraded.png comes from --pairs)
METHODS=${METHODS:-personal,personal-raw,generic,baseline}   # METHODS=personal,personal-raw,baseline halves the time

for id in $ALBUMS; do
  src="$DATA/albums/$id"
  dst="$OUT/$id"
  mkdir -p "$dst"
  echo "== $id: $(ls "$src/refs" | wc -l) reference photos"
  if [ ! -f "$dst/album/manifest.json" ]; then
    $PYTHON cli.py prepare --input "$src/refs" --output "$dst/album" --no-progress
  fi
  if [ ! -f "$dst/fit/prior/prior.json" ]; then
    start=$(date +%s)
    # Everything of the run goes to $dst/fit (the prior to $dst/fit/prior); an interrupted fit resumes.
    resume=()
    if [ -e "$dst/fit/checkpoints/last.ckpt" ]; then resume=(--ckpt_path "$dst/fit/checkpoints/last.ckpt"); fi
    $PYTHON cli.py fit --config "$FIT_CONFIG" ${TRAINER:+--config "$TRAINER"} \
      --data.album "$dst/album" \
      --trainer.default_root_dir "$dst/fit" \
      --trainer.logger mystyle_pl.tuning.RunCSVLogger \
      --model.anchors_cache "$dst/fit/anchors" ${resume[@]+"${resume[@]}"}
    echo "fit wall time: $(( $(date +%s) - start )) s" | tee "$dst/fit/wall_time.txt"
  fi
  if [ ! -f "$dst/eval/metrics.json" ]; then
    $PYTHON cli.py evaluate --prior "$dst/fit/prior" --photos "$src/gt.png" --pairs "$src" \
      --tasks "$TASKS" --methods "$METHODS" --preset "$PRESET" --betas '' --out "$dst/eval" --no-progress
  fi
done
