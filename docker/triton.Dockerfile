# syntax=docker/dockerfile:1
# The Triton image: NVIDIA's Triton with the TensorRT-LLM and Python backends, plus our model repository
# (model_repository/: config.pbtxt + thin model.py adapters) and the torch code they call (services/).
# Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t <registry>/minmo-serve/triton:0.1.0 .
# Weights are not in the image: the chart mounts them and sets MINMO_WEIGHTS_DIR.

ARG TRITON_VERSION=25.06
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-trtllm-python-py3

# Pinned like pyproject.toml. torch is not reinstalled by default: the base ships the CUDA build that
# TensorRT-LLM is compiled against; set TORCH_VERSION only for a base image without it. tokenizers is
# NOT installed: the base's transformers (and with it tensorrt_llm, 0.20.0 in 25.06) requires the
# tokenizers the base ships, and our code uses only its stable API (Tokenizer.from_file, token_to_id).
ARG NUMPY_VERSION=1.26.4
ARG SAFETENSORS_VERSION=0.8.0
ARG KALDI_NATIVE_FBANK_VERSION=1.23.0
ARG PYYAML_VERSION=6.0.3
# The liveness probe (services/triton/stub_probe.py) talks to the server through tritonclient.
ARG TRITONCLIENT_VERSION=2.73.0
ARG TORCH_VERSION=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# The model.py adapters import `services.*` from /opt/minmo.
# The base is Ubuntu 24.04, whose system Python is "externally managed" (PEP 668): pip refuses to install
# into it unless told to; this image is that Python's only user.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/opt/minmo \
    HOME=/tmp

RUN python3 -m pip install \
      "numpy==${NUMPY_VERSION}" \
      "safetensors==${SAFETENSORS_VERSION}" \
      "kaldi-native-fbank==${KALDI_NATIVE_FBANK_VERSION}" \
      "pyyaml==${PYYAML_VERSION}" \
      "tritonclient[grpc]==${TRITONCLIENT_VERSION}" \
 && if [ -n "${TORCH_VERSION}" ]; then \
      python3 -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    fi \
 && python3 -c "import torch, numpy, safetensors, tokenizers, kaldi_native_fbank, tritonclient.grpc" \
 && python3 -c "import transformers"  # checks its pinned tokenizers/numpy at import: what tensorrt_llm needs

COPY services /opt/minmo/services
# The tensor contracts the adapters parse with (numpy only; the orchestrator uses the same package).
COPY minmo_contracts /opt/minmo/minmo_contracts
COPY model_repository /opt/minmo/model_repository

# NGC's Triton images carry the user triton-server (uid 1000); create it where a base lacks it.
# The uid is the chart's security.tritonUser.
RUN (getent passwd 1000 >/dev/null || useradd --uid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin minmo) \
 && chmod -R a+rX /opt/minmo
USER 1000:1000
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/opt/minmo/model_repository", "--model-control-mode=explicit"]
