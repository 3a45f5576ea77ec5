# Set-up and entry points. `make demo` and `make test` work on a fresh clone with Python 3.11, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test bench clean

setup: $(STAMP)

# torch is pinned to the CPU build on this machine's disk first, so the package's range installs nothing more.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tstcnn demo --out runs/demo

# The annotation page is tested in a real browser: Debian's Chromium, driven by Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null || \
		(apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)

# The layer contracts (pyproject.toml) and the linter run before the tests: an upward import fails the build.
test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_loader.py

clean:
	rm -rf $(VENV) runs
