# Two commands from a fresh machine: `make run` (the app) and `make test` (the suite).
# Each creates .venv and installs what it needs; nothing else has to be on the machine but Python >= 3.11
# with venv, a C/C++ compiler (llama-cpp-python builds llama.cpp from source) and make.

PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A portable llama.cpp build (no -march=native): the same wheel works in bundles and on other CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
# The CPU build of torch for the embedding model; an unpinned torch pulls gigabytes of CUDA packages.
TORCH ?= torch==2.13.0
# OpenMP threads that spin-wait starve everything else on small machines.
export OMP_WAIT_POLICY ?= passive

.PHONY: install run chat test test-fast lint format bench clean doctor bundle bundle-smoke

install: $(STAMP)

$(STAMP): pyproject.toml
	@bash packaging/system-deps.sh
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required: install python3.11 (and python3.11-venv)"; exit 1; }
	@command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 || { \
		echo "A C++ compiler is needed to build llama-cpp-python. Debian/Ubuntu: sudo apt-get install build-essential;"; \
		echo "macOS: xcode-select --install. (No sudo? conda install -c conda-forge cxx-compiler)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "Could not create a venv. On Debian/Ubuntu: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c packaging/constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/shoal

chat: install
	$(BIN)/shoal chat

doctor: install
	$(BIN)/shoal doctor

# The outer timeout guards against a Qt teardown that hangs (a nested event loop in a coroutine can do that).
test: install
	timeout --kill-after=30 1500 $(BIN)/python -m pytest -q tests/unit tests/integration tests/serve tests/group
	timeout --kill-after=30 1200 $(BIN)/python -m pytest -q tests/ui

test-fast: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check core app ui tests bench packaging
	$(BIN)/ruff format --check core app ui tests bench packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format core app ui tests bench packaging
	$(BIN)/ruff check --fix core app ui tests bench packaging

# The double-click app for this machine (packaging/shoal.spec): FLAVOUR=slim (no torch, ~250 MB) or full.
FLAVOUR ?= slim
bundle: install
	$(BIN)/python packaging/build_bundle.py --flavour $(FLAVOUR)

# Runs the built bundle offscreen: window + scripted turn + screenshot, a llama.cpp turn, memory, start-up time.
bundle-smoke: install
	$(BIN)/python packaging/smoke_bundle.py --flavour $(FLAVOUR)

bench: install
	$(BIN)/python bench/timeline.py
	$(BIN)/python bench/llm_overhead.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/ui_lag.py
	$(BIN)/python bench/wire.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
