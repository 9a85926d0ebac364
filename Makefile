# The README's two commands: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tedloc-installed
OUT ?= runs/demo

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py src/tedloc/eval/_boxkernel.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# grad-cam without its opencv-python-headless requirement: tedloc's OpenCV (contrib) serves it
	$(BIN)/python -m pip install --quiet --no-deps "grad-cam>=1.5"
	$(BIN)/python -m tedloc.utils.env_check
	touch $(STAMP)

demo: setup
	$(BIN)/tedloc demo --out $(OUT)
	@echo "tedloc is installed in $(BIN), which a new shell's PATH does not hold: run $(BIN)/tedloc, or first . $(BIN)/activate"

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
