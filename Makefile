# MinMo Serve: the two commands are `make demo` and `make test`; everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WEIGHTS := weights/smoke
STAMP := $(VENV)/.installed

.PHONY: install weights up down demo test lint perf clean

# System packages (espeak-ng and sox for test speech, Debian's libpython3.11 for the Triton Python
# stub, redis-server) and the venv. Re-runs only when pyproject.toml changes.
install: $(STAMP)
$(STAMP): pyproject.toml
	@bash scripts/install_system_packages.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

weights: install $(WEIGHTS)/.stamp
$(WEIGHTS)/.stamp: $(STAMP) $(shell find services -name "*.py") services/duplex/checkpoints/smoke/model.safetensors
	$(PY) -m services.build_weights --out $(WEIGHTS)
	@touch $(WEIGHTS)/.stamp

up: weights
	$(VENV)/bin/minmo stack up --weights $(WEIGHTS)

down:
	@test -x $(VENV)/bin/minmo && $(VENV)/bin/minmo stack down || true

demo: weights
	@$(VENV)/bin/minmo stack down >/dev/null 2>&1 || true
	$(VENV)/bin/minmo stack up --weights $(WEIGHTS)
	$(VENV)/bin/minmo demo --out out/reply.wav

# Per-stage latency of the streaming paths against the local stack (started if it is not up).
perf: weights
	@curl -sf -o /dev/null http://127.0.0.1:8000/v2/health/ready || $(VENV)/bin/minmo stack up --weights $(WEIGHTS)
	$(PY) -m perf.stage_latency --repeats 5

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services orchestrator perf

test: weights lint
	$(PY) -m pytest -q

clean: down
	rm -rf .run out $(WEIGHTS)
