# `make demo` and `make test` each create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-crash lint bench run clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "thidua needs Python 3.11 or newer ($(PYTHON) is older)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/thidua demo

run: $(STAMP)
	$(BIN)/thidua run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Only the kill tests and two processes sharing the outbox.
test-crash: $(STAMP)
	$(BIN)/pytest -m crash -s

test-fast: lint
	$(BIN)/pytest -m "not slow and not crash"

bench: $(STAMP)
	$(BIN)/python -m bench.webhook

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
