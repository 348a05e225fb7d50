#!/usr/bin/env bash
# One batched step of every PyTorch stage at minmo sizes, fp32 and bf16, 1 and 8 streams, on one GPU:
# ms per step and peak memory, printed as a table and written to $OUT (or out/gpu_check).
#   perf/gpu_check.sh [extra perf.gpu_check flags]          e.g. --steps 20, --stages vocoder
# Needs: one CUDA GPU (sized for an H100/H200: the fp32 PyTorch backbone alone is 30 GB), a CUDA build of
# torch and this project's runtime packages (numpy, safetensors, kaldi-native-fbank, pyyaml). No network:
# weights are random, nothing is downloaded. Bounded to 7.5 minutes (timeout), ~2-4 expected.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-out/gpu_check}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "error: nvidia-smi not found: run this on a machine with an NVIDIA GPU" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PYCHECK'
import importlib, sys
missing = [m for m in ("torch", "numpy", "safetensors", "kaldi_native_fbank", "yaml") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"error: missing Python packages {missing}: pip install the project's runtime dependencies")
import torch
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA device (a CPU build of torch?)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PYCHECK
mkdir -p "$OUT_DIR"
timeout 450 "$PY" -m perf.gpu_check --device cuda --out "$OUT_DIR" "$@"
