"""The Triton image's own pins (issue 16): nothing installed over what TensorRT-LLM needs, pip allowed to install.

Checked without building (no Docker engine here); see docs/real-model.md for what only a build can show.
"""

from __future__ import annotations

from pathlib import Path

from services.gpu_profile.values import GpuValues
from tests.helm.dockerfile_parse import arg_defaults, instructions

ROOT = Path(__file__).resolve().parents[2]
TRITON = ROOT / "docker" / "triton.Dockerfile"


def test_the_image_keeps_the_tokenizers_its_transformers_and_tensorrt_llm_need() -> None:
    parsed = instructions(TRITON)
    runs = " ".join(i.arguments for i in parsed if i.keyword == "RUN")
    assert "TOKENIZERS_VERSION" not in arg_defaults(parsed)
    assert '"tokenizers==' not in runs, "a tokenizers pin breaks the base's transformers and tensorrt_llm"
    assert 'python3 -c "import transformers"' in runs, "transformers checks its own pins at import"


def test_pip_may_install_into_the_bases_externally_managed_python() -> None:
    env = " ".join(i.arguments for i in instructions(TRITON) if i.keyword == "ENV")
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in env


def test_the_convert_script_is_where_the_trtllm_image_has_it() -> None:
    values = GpuValues.load(ROOT / "services" / "gpu_profile" / "values-l20.yaml")
    assert values.convert_script == "/app/examples/models/core/qwen/convert_checkpoint.py"
