# MinMo Serve: the two commands are `make demo` and `make test`; everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WEIGHTS := weights/smoke
STAMP := $(VENV)/.installed
PROTO_GEN := protos/gen
PROTOS := $(shell find protos/minmo -name "*.proto")

.PHONY: install protos weights up down demo test lint perf fuzz faults clean

# System packages (espeak-ng and sox for test speech, Debian's libpython3.11 for the Triton Python
# stub, redis-server), the venv, and the API's generated code. Re-runs only when pyproject.toml changes.
install: $(STAMP) protos
$(STAMP): pyproject.toml
	@bash scripts/install_system_packages.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,parity]'
	@touch $(STAMP)

# Python code and type stubs of protos/minmo into the gitignored protos/gen (package `minmo`). The editable
# install maps only the packages that existed when it ran (on a fresh clone: before protos/gen), hence the re-install.
protos: $(PROTO_GEN)/.stamp
$(PROTO_GEN)/.stamp: $(STAMP) $(PROTOS) scripts/gen_protos.sh
	PY=$(PY) bash scripts/gen_protos.sh
	@$(PY) -c "import minmo.v1.minmo_pb2_grpc" 2>/dev/null || $(PY) -m pip install --quiet --no-deps -e .

weights: install $(WEIGHTS)/.stamp
$(WEIGHTS)/.stamp: $(STAMP) $(shell find services -name "*.py") $(wildcard services/*/checkpoints/smoke/model.safetensors)
	$(PY) -m services.build_weights --out $(WEIGHTS)
	@touch $(WEIGHTS)/.stamp

up: weights
	$(VENV)/bin/minmo stack up --weights $(WEIGHTS)

down:
	@test -x $(VENV)/bin/minmo && $(VENV)/bin/minmo stack down || true

demo: weights
	@$(VENV)/bin/minmo stack down >/dev/null 2>&1 || true
	$(VENV)/bin/minmo stack up --weights $(WEIGHTS)
	$(VENV)/bin/minmo talk --out out/reply.wav

# Per-stage latency of the streaming paths, each model's per-stream cost against its batch size (through Triton
# and in process), then the load sweep (N concurrent real-time conversations until real time breaks, beside the
# direct chain), against the local stack (started if it is not up).
perf: weights
	@curl -sf -o /dev/null http://127.0.0.1:8000/v2/health/ready || $(VENV)/bin/minmo stack up --weights $(WEIGHTS)
	$(PY) -m perf.stage_latency --repeats 5
	$(PY) -m perf.batching --in-process --out out/perf/batching
	$(PY) -m perf.load --out out/perf/load

# Coverage-guided fuzzing (atheris) of the audio decoder and of Converse's event parsing, FUZZ_SECONDS each;
# inputs executed go to out/fuzz/counts.json, crash inputs to out/fuzz/crashes/. `make test` runs a short version.
FUZZ_SECONDS ?= 60
fuzz: protos
	$(PY) -m tests.fuzz.run_atheris --seconds $(FUZZ_SECONDS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services orchestrator perf

test: weights lint
	$(PY) -m pytest -q

# The long fault suite: 10 injections of each fault on its own Triton, Redis and orchestrators (make test runs 2
# of each); the fault table goes to out/faults/faults.md and faults.json.
faults: weights
	MINMO_FAULTS_LONG=1 $(PY) -m pytest -q tests/faults

clean: down
	rm -rf .run out $(WEIGHTS) $(PROTO_GEN)
