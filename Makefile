# The few targets a newcomer needs. Each bootstraps its own virtual environment in .venv,
# so a machine with only Python 3.11+ and make can run them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A pass that hangs is interrupted (pytest then prints what ran and what failed) long before
# CI's own limit: the whole suite takes about 10 minutes. --foreground keeps Ctrl-C working.
BOUNDED := timeout --foreground --signal=INT --kill-after=60

.PHONY: run test lint typecheck unit rabbitmq bench clean
# One target at a time, even under make -j: the two test passes share two cores and the
# machine's RabbitMQ, and their waits are timed.
.NOTPARALLEL:

run: $(STAMP)  ## start the whole system on the embedded default and show a demo
	$(BIN)/cmvoice dev --demo

test: $(STAMP) lint typecheck unit rabbitmq  ## everything CI checks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BOUNDED) 2400 $(BIN)/pytest

# The tests marked `rabbitmq` again, with RabbitMQ (127.0.0.1:5672) as the broker, in a vhost of
# their own; they skip, saying why, where no RabbitMQ runs (unless CMVOICE_TEST_RABBITMQ_REQUIRED).
rabbitmq: $(STAMP)  ## the broker-dependent tests with RabbitMQ as the broker
	CMVOICE_TEST_BROKER=rabbitmq $(BOUNDED) 900 $(BIN)/pytest -m rabbitmq tests/e2e tests/faults

bench: $(STAMP)
	$(BIN)/python -m bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
