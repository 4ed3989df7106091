# shutterlog: the two commands of the README, and the rest.
#   make run    install what is missing, then run the whole system in the foreground
#   make test   install what is missing, then run the whole test suite (and lint)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SYSDEPS := var/.system-deps-stamp

.PHONY: run up down test lint deps bench clean

run: deps
	$(BIN)/shutterlog run

up: deps
	$(BIN)/shutterlog up

down:
	@if [ -x $(BIN)/shutterlog ]; then $(BIN)/shutterlog down; fi

test: deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy

deps: $(SYSDEPS) $(STAMP)

$(SYSDEPS): scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	@mkdir -p var && touch $@

$(STAMP): setup.cfg pyproject.toml $(SYSDEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

bench: deps
	$(BIN)/python -m scripts.bench.append
	$(BIN)/python -m scripts.bench.pipeline
	$(BIN)/python -m scripts.bench.geo
	$(BIN)/python -m scripts.bench.api
	$(BIN)/python -m scripts.bench.push
	$(BIN)/python -m scripts.bench.fanout
	$(BIN)/python -m scripts.bench.realtime --idle 10000
	$(BIN)/python -m scripts.bench.replay --events 250000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
