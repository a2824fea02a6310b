# `make demo` and `make test` each create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest workers: the heavy tests go one after another on one of them (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

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
	$(PYTEST)

# Only the kill tests and two processes sharing the outbox.
test-crash: $(STAMP)
	$(BIN)/pytest -m crash -s

test-fast: lint
	$(PYTEST) -m "not slow and not crash and not fault and not fuzz"

bench: $(STAMP)
	$(BIN)/python -m bench.webhook

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
