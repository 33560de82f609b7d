# The README's commands. PYTHON picks the interpreter (default python3).
PYTHON ?= python3
export PYTHON

.PHONY: setup test bench

setup:
	bash scripts/setup.sh

# Set up, then run the whole test suite (what CI runs).
test: setup
	$(PYTHON) -m pytest -q

bench: setup
	$(PYTHON) benchmarks/generator.py
