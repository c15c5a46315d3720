# keysim: two commands, `make run` and `make test`.  Both create .venv on first use and reuse it;
# the venv is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "keysim needs Python >= 3.11; set PYTHON=...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/keysim run scenarios/baseline.toml

test: $(STAMP) lint
	$(BIN)/mypy protocol sim
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check protocol sim tests
	$(BIN)/ruff format --check protocol sim tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
