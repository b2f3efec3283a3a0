# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
# `make docs` builds the documentation site into site/ (`mkdocs serve` to read it as you edit).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite mostly waits on the servers and CLI processes it starts: two pytest-xdist workers
# halve its time on two cores. `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pgmlops demo

# mkdocs --strict: a broken link or anchor, or a reference page the code cannot render, fails.
test: $(STAMP)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet --site-dir site
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf .pgmlops build site *.egg-info
