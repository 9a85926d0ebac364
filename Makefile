# The README's two commands: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tedloc-installed
OUT ?= runs/demo

# pip's own lines about file:// indexes that hold no folder for a package (a machine's pip.conf listing local
# mirrors: "Location 'file:///...' is ignored: it is neither a file nor a directory") are left out; everything
# else pip says is shown, and its exit status kept (bash's pipefail)
SHELL := bash
.SHELLFLAGS := -o pipefail -c
QUIET_INDEXES := 2>&1 | { grep -v "^WARNING: Location 'file:.*' is ignored: it is neither a file nor a directory" || true; }
# pip install ARGS, the command shown as typed (without the filter)
define pip_install
@echo '$(BIN)/python -m pip install $(1)'
@$(BIN)/python -m pip install $(1) $(QUIET_INDEXES)
endef

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py src/tedloc/eval/_boxkernel.c
	$(PYTHON) -m venv $(VENV)
	$(call pip_install,--quiet --upgrade pip)
	$(call pip_install,--quiet -e ".[test]")
	# grad-cam without its opencv-python-headless requirement: tedloc's OpenCV (contrib) serves it
	$(call pip_install,--quiet --no-deps "grad-cam>=1.5")
	$(BIN)/python -m tedloc.utils.env_check
	touch $(STAMP)

demo: setup
	$(BIN)/tedloc demo --out $(OUT)
	@echo "tedloc is installed in $(BIN), which a new shell's PATH does not hold: run $(BIN)/tedloc, or first . $(BIN)/activate"

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
