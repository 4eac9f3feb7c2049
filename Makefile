# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Real datasets for integration tests and the demo, when this checkout sits beside shared/.
export GENREC_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: setup demo test browser clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly pinned: this resolves to the CPU build on disk, never CUDA wheels
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock torch==2.13.0
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/genrec quickstart

# Debian's chromium for the browser test of the web page (Playwright drives it; never downloads one).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"; }

# Layer contracts first (pyproject.toml [tool.importlinter]): a back-import fails in a second.
test: setup browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q tests src/genrec/api.py README.md --doctest-modules --doctest-glob=README.md

clean:
	rm -rf $(VENV) .pytest_cache
