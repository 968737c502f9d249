# kefu — `make run` runs the system, `make test` runs every check. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint typecheck unit service integration e2e contracts bench-channels bench-router bench-escalation bench-escalation-batches bench-e2e bench-outbox bench-http-stack bench-router-service bench-kafka bench-restart simulate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kefu needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: install  ## the whole system on an embedded PostgreSQL and Kafka-protocol broker
	$(BIN)/kefu dev

test: lint typecheck  ## ruff, mypy --strict, then every test (unit, service, integration, e2e)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy .

unit: install
	$(BIN)/pytest tests/unit

service: install  ## the services' handlers on a real PostgreSQL, without Kafka (one process: faster than starting workers)
	$(BIN)/pytest -n 0 tests/service

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

contracts: install  ## regenerate contracts/schemas/ after changing a model
	$(BIN)/kefu contracts

clean:
	rm -rf $(VENV) .kefu .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

bench-channels: install  ## webhooks/s and latency per channel vs a bare endpoint (needs wrk)
	$(BIN)/python -m bench.channels

simulate: install  ## the decision core against Erlang C, then 30 % priority contacts against Cobham (a = 2.5, c = 3..6, 100,000 arrivals each)
	$(BIN)/kefu simulate --erlangs 2.5 --agents 3 4 5 6 --arrivals 100000 --seed 1
	$(BIN)/kefu simulate --erlangs 2.5 --agents 3 4 5 6 --arrivals 100000 --seed 1 --priority-share 0.3

bench-router: install  ## decision core vs PostgreSQL SKIP LOCKED at 15k agents / 500k waiting contacts
	$(BIN)/python -m bench.router

bench-e2e: install  ## the whole system as processes: mixed-channel webhooks at stepped rates, simulated agents, backlogs, CPU (ARGS="--rates 10 50 --duration 10 --compare --burst")
	$(BIN)/python -m bench.e2e $(ARGS)

bench-escalation: install  ## escalation: events/s through the policy engine and due-to-command delay at 10k contacts / 100k timers
	$(BIN)/python -m bench.escalation

bench-escalation-batches: install  ## escalation consumers: statements, transactions and CPU per contact, fetches of 50 and 200 ms (ARGS="--baseline <rev> --rounds 3")
	$(BIN)/python -m bench.escalation_batches $(ARGS)

bench-outbox: install  ## outbox relay: rows/s, CPU per row and per pass, compilations and round trips per pass (ARGS="--baseline <rev> --rounds 5")
	$(BIN)/python -m bench.outbox $(ARGS)

bench-rate-limit: install  ## CPU per webhook of the channels service's rate limit: limits' memory storage vs the service's
	$(BIN)/python -m bench.rate_limit $(ARGS)

bench-http-stack: install  ## a request's fixed CPU cost in the kit's HTTP stack (ARGS="--baseline <rev>")
	$(BIN)/python -m bench.http_stack $(ARGS)

bench-kafka: install  ## consumers' fetch wait vs broker and client CPU, requests by kind, latency, on the embedded Tansu (ARGS="--waits 50 200 --rate 40")
	$(BIN)/python -m bench.kafka $(ARGS)

bench-router-service: install  ## router: PostgreSQL statements, round trips and CPU per contact consumed, accepted, completed (ARGS="--baseline <rev> --rounds 3")
	$(BIN)/python -m bench.router_service $(ARGS)

bench-restart: install  ## a restarted router / escalation service: process start to /readyz and to its first record applied, after SIGKILL and SIGTERM (ARGS="--runs 3")
	$(BIN)/python -m bench.restart $(ARGS)
