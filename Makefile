# One entry point. `make run` starts the platform; `make test` is what CI runs.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install run test lint typecheck imports pytest bench protos clean node browser clients

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## npm projects the tests drive (dev tools, dashboard, generated TypeScript client): `npm ci`
NODE_DIRS := $(patsubst %/package-lock.json,%,$(wildcard tools/node/package-lock.json web/package-lock.json clients/typescript/package-lock.json))
NODE_STAMPS := $(addsuffix /node_modules/.ci-installed,$(NODE_DIRS))

%/node_modules/.ci-installed: %/package-lock.json %/package.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_STAMPS)

## Debian's chromium for the browser tests (Playwright never downloads a browser here)
browser:
	bash scripts/ensure_chromium.sh

## start the platform on its embedded default (SQLite, local executor, no other service)
run: install
	$(BIN)/mlp server

## lint, types, architecture contracts, then the whole test suite
test: install node browser lint typecheck imports pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

## three workers on two cores: the end-to-end tests wait on subprocesses and sockets a third
## of the time (2 workers: 17.4 min, 1.55 cores busy; 3 workers: 13.9 min), whole files per
## worker, the files marked `slow` dealt first (tests/conftest.py)
pytest:
	$(BIN)/pytest -n 3 --dist loadfile --durations=25

## benchmarks: print tables and record them in BENCHMARKS.md
bench: install
	$(BIN)/python bench/control_plane.py
	$(BIN)/python bench/control_plane.py --backends postgres --pending-queue 0,1000,10000
	@if [ -f bench/jobs.py ]; then $(BIN)/python bench/jobs.py; fi
	bash scripts/ensure_loadgen.sh
	@if [ -f bench/serving.py ]; then $(BIN)/python bench/serving.py; fi
	$(BIN)/python bench/sdk.py
	$(BIN)/python bench/governance.py
	$(BIN)/python bench/features.py --feast

## regenerate the committed protobuf modules from protos/ (a test fails when they are stale)
protos: install
	$(BIN)/python scripts/gen_protos.py

## regenerate the committed API clients (clients/python, clients/typescript) from openapi.json
## with OpenAPI Generator (a test fails when they are stale); the TypeScript lock follows
## package.json (unchanged when its dependencies are)
clients: install
	$(BIN)/python scripts/gen_clients.py
	cd clients/typescript && npm install --package-lock-only --no-audit --no-fund --loglevel=error

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
