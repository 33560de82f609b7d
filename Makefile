# The README's commands. PYTHON picks the interpreter (default python3).
PYTHON ?= python3
export PYTHON

.PHONY: setup test bench grid

setup:
	bash scripts/setup.sh

# Set up, then run the whole test suite (what CI runs).
test: setup
	$(PYTHON) -m pytest -q

bench: setup
	$(PYTHON) benchmarks/generator.py

# The main job until the demo lands: fetch the real MobileStyleGAN FFHQ prior, render 8 faces.
grid: setup
	$(PYTHON) benchmarks/mobilestylegan_grid.py --out outputs/faces.png --dlib
