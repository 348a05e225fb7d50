#!/usr/bin/env bash
# Build the TensorRT-LLM backbone engine from the deployment's values file:
#   scripts/build_trtllm_engine.sh --values deploy/values-l20.yaml [--dry-run] [--python PYTHON]
# Step 1 converts the Hugging Face Qwen2.5-7B-Instruct folder (MinMo's LoRA merged) into a
# TensorRT-LLM checkpoint; step 2 runs trtllm-build in-process with the network patched to output
# the final hidden states (services/gpu_profile/hidden_states.py). --dry-run prints both commands.
# Run it where tensorrt_llm is installed (the Triton TensorRT-LLM container) on the target GPU type:
# an engine is specific to the GPU architecture and the TensorRT-LLM version it was built with.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m services.gpu_profile.engine "$@"
