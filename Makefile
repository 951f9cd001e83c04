# dispatchbot: `make demo` and `make test` each set everything up on a fresh machine first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast bench install migrate model model-setup lint format postgres clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dispatchbot needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first and pinned, so pip takes the local CPU wheel instead of the multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

migrate: install
	$(BIN)/dispatchbot db upgrade

# The local vLLM: its own virtualenv and converted weights, built once; quick when in place.
model-setup: install
	$(BIN)/dispatchbot model setup

model: install
	$(BIN)/dispatchbot model serve

demo: migrate model
	$(BIN)/dispatchbot ingest examples/policies
	$(BIN)/dispatchbot evaluate retrieval
	$(BIN)/dispatchbot ask "who approves a 30,000 lb load?"
	$(BIN)/dispatchbot ask "what's the SLA on a priority-1 reefer ticket?"
	$(BIN)/dispatchbot ask "reefer temp alarm going off on my trailer, what do i do"
	$(BIN)/dispatchbot evaluate answers -n 20
	@echo "The local model keeps running for more questions; stop it with: $(BIN)/dispatchbot model stop"

# The store tests run on PostgreSQL too; start the machine's server if it is installed but down.
postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		echo "starting the local PostgreSQL server"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two tiers. `make test`: everything, against a vLLM the tests start on a free port (they
# need only the venv and the weights; about 17 minutes on two cores). `make test-fast`:
# every test but those marked `vllm` (vLLM itself: serving, adapters, training to serving)
# or `slow` (benchmark smoke runs, training, child processes, the second Qdrant engine),
# with a canned model where any model will do; no vLLM, about 4 minutes on two cores.
# tests/conftest.py has the details.
test: lint postgres model-setup
	$(BIN)/pytest

test-fast: install postgres
	$(BIN)/pytest -m "not vllm"

# Benchmarks (not part of `make test`): every part, or one with `make bench-PART`
# (embeddings, retrieval, store, serving, adapters, answer, answers, slack, training).
# Results: bench/results/.
bench: postgres model-setup
	$(BIN)/python -m bench all

bench-%: postgres model-setup
	$(BIN)/python -m bench $*

# Retrieval needs neither PostgreSQL nor the local LLM: Qdrant Edge and local mode side by
# side at 1,000 to 100,000 chunks (about 20 minutes on two cores).
bench-retrieval: install
	$(BIN)/python -m bench retrieval

# Verified answers need neither PostgreSQL nor the local LLM: reuse precision and recall by
# threshold on examples/eval/paraphrases.jsonl, and the time of one match (under a minute).
bench-verified: install
	$(BIN)/python -m bench verified-matching

clean:
	-test -x $(BIN)/dispatchbot && $(BIN)/dispatchbot model stop
	rm -rf $(VENV) .venv-vllm var .pytest_cache .ruff_cache .mypy_cache *.egg-info
