# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start everything (creates the venv and the database on first run). Ctrl-C stops it all.
run: $(STAMP)
	$(PY) manage.py lifecycle up

## Run the whole suite against the real PostgreSQL and RabbitMQ, as three pytest processes
## side by side (tests/shards.py); options go to each: make test ARGS="-x".
test: $(STAMP)
	$(PY) -m tests.shards $(ARGS)

## Print the benchmark figures (each with its baseline measured in the same run).
bench: $(STAMP)
	$(PY) -m bench

## Lint, format check and types: the same as CI runs.
lint: $(STAMP)
	$(VENV)/bin/ruff check dashboard lifecycle bench tests
	$(VENV)/bin/ruff format --check dashboard lifecycle bench tests
	$(VENV)/bin/mypy dashboard lifecycle bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
