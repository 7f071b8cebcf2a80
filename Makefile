# One entry point. `make run` starts the platform; `make test` is what CI runs.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install run test lint typecheck imports pytest bench protos clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## start the platform on its embedded default (SQLite, local executor, no other service)
run: install
	$(BIN)/mlp server

## lint, types, architecture contracts, then the whole test suite
test: install lint typecheck imports pytest

lint:
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest -n 2 --dist loadfile

## benchmarks: print tables and record them in BENCHMARKS.md
bench: install
	$(BIN)/python bench/control_plane.py
	@if [ -f bench/jobs.py ]; then $(BIN)/python bench/jobs.py; fi
	@if [ -f bench/serving.py ]; then $(BIN)/python bench/serving.py; fi
	$(BIN)/python bench/sdk.py

## regenerate the committed protobuf modules from protos/ (a test fails when they are stale)
protos: install
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
