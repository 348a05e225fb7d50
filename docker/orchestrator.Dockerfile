# syntax=docker/dockerfile:1
# The orchestrator image: `minmo serve` (gRPC front door) and `minmo autoscale` (the pool autoscaler).
# The chart also runs, in this image: `sleep` (the orchestrator's preStop; coreutils of the slim base),
# `python -m orchestrator.autoscaler.heartbeat` (the autoscaler's liveness) and
# `python -m orchestrator.deploy.redis_password` (the Redis password hook Job); tests/helm/test_dockerfiles.py
# checks those modules are in the package this image installs.
# Build from the repository root:
#   docker build -f docker/orchestrator.Dockerfile -t <registry>/minmo-serve/orchestrator:0.1.0 .
# Every version is a build argument with a pinned default; pyproject.toml pins the Python dependencies.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: generate the API code from protos/ and build one wheel of the package -------------------
FROM ${PYTHON_IMAGE} AS build
ARG GRPCIO_TOOLS_VERSION=1.81.1
ARG MYPY_PROTOBUF_VERSION=5.1.0
WORKDIR /src
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --no-cache-dir "grpcio-tools==${GRPCIO_TOOLS_VERSION}" "mypy-protobuf==${MYPY_PROTOBUF_VERSION}"
COPY pyproject.toml README.md ./
COPY scripts/gen_protos.sh scripts/gen_protos.sh
COPY protos/minmo protos/minmo
COPY orchestrator orchestrator
COPY minmo_contracts minmo_contracts
COPY services services
RUN PY=/opt/protoc/bin/python bash scripts/gen_protos.sh \
 && /opt/protoc/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# The package's own dependencies are the orchestrator's (no torch): the models' extras are not installed here.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
 && rm -rf /wheels \
 && groupadd --gid 10001 minmo \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin minmo
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd; the chart's security.orchestratorUser.
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9464
ENTRYPOINT ["minmo"]
CMD ["serve", "--help"]
