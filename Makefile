# recloss-lite: `make book` builds the executable book, `make test` runs lint + tests. Both set everything up.
# torch==2.13.0 is installed first (a CPU wheel), so no multi-GB CUDA build is pulled in by the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
BUILD ?= book/_build

.PHONY: setup browser book book-fast test test-fast lint lab clean
.DEFAULT_GOAL := book

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[book,dev,lab]"
	touch $@

setup: $(BIN)/.installed

# Headless Chromium for the rendered-book tests (Debian packages; skipped when they are already there).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The main job: execute every chapter (full settings) and render HTML into book/_build/html.
book: setup
	$(BIN)/jupyter-book build book --path-output $(BUILD)/.. -W -n --keep-going
	@echo "open $(BUILD)/html/index.html"

# The same book in fast mode (CI's small but real settings).
book-fast: setup
	RECLOSS_FAST=1 $(BIN)/jupyter-book build book --path-output $(BUILD)/.. -W -n --keep-going

lint: setup
	$(BIN)/ruff check recloss_lite tests
	$(BIN)/ruff format --check recloss_lite tests
	$(BIN)/mypy recloss_lite/core

# Lint, then every test: unit tests, and the whole book built in fast mode and opened in headless Chromium; then the
# library's tests once more with the compiled kernels switched off (the PyTorch path must pass them too).
test: setup browser lint
	$(BIN)/python -m pytest
	RECLOSS_KERNELS=0 $(BIN)/python -m pytest -q -m "not book" -p no:cacheprovider \
	  --ignore=tests/test_lab.py --ignore=tests/test_packaging.py

# The unit tier: everything but the book build and the slow real-data tests (about a minute).
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not book and not slow"

# JupyterLab with this repository's settings (jupyter_config.py and .jupyter/): a double click opens a chapter as a
# notebook, and saving a chapter that was only run leaves it byte-identical. tests/test_lab.py starts it with LAB_ENV.
LAB_ENV = JUPYTER_CONFIG_PATH="$(CURDIR):$(CURDIR)/.jupyter" JUPYTER_PATH="$(CURDIR)/.jupyter"
lab: setup
	$(LAB_ENV) $(BIN)/jupyter lab book/

clean:
	rm -rf $(BUILD) .pytest_cache
