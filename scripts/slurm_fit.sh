#!/usr/bin/env bash
# Tune a personal prior on several nodes under SLURM.
#   sbatch scripts/slurm_fit.sh ALBUM_DIR [extra mystyle-pl fit arguments]
# Keep --nodes / --ntasks-per-node / --gpus-per-node equal to trainer.num_nodes / trainer.devices
# in configs/trainer/slurm.yaml: Lightning reads ranks from SLURM's environment.
#SBATCH --job-name=mystyle-fit
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
set -euo pipefail
album=${1:?usage: sbatch scripts/slurm_fit.sh ALBUM_DIR [fit args]}
shift
srun mystyle-pl fit --config configs/trainer/slurm.yaml --config configs/fit/mystyle.yaml \
  --data.album "$album" "$@"
