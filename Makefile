# The README's commands. PYTHON picks the interpreter (default python3).
PYTHON ?= python3
export PYTHON

.PHONY: setup test bench grid demo gpu-check

setup:
	bash scripts/setup.sh

# Set up, then run the whole test suite (what CI runs) on TEST_WORKERS processes (pytest-xdist), each
# with one torch thread (OMP_NUM_THREADS=1): on the 2-core CPU 4.8 minutes against 7.7 serially.
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS)

bench: setup
	$(PYTHON) benchmarks/generator.py

# The main job: set up, fetch the face prior, synthesise a demo person's album, prepare, tune,
# run every task and evaluate (about 15 minutes on a 2-core CPU, 3 on a GPU). Re-running resumes.
demo: setup
	$(PYTHON) cli.py demo --out outputs/demo

# Fetch the real MobileStyleGAN FFHQ prior and render 8 faces (a quick look at the generic prior).
grid: setup
	$(PYTHON) benchmarks/mobilestylegan_grid.py --out outputs/faces.png --dlib

# On a GPU machine: set up, then measure everything a GPU shows (correctness, tuning and projection
# throughput, the demo, a full fit's first steps) into outputs/gpu_check/gpu_check.{json,md}, at most 8 minutes.
GPU_CHECK_OUT ?= outputs/gpu_check
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_OUT)
