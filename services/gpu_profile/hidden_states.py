"""Make the TensorRT-LLM backbone engine return its last-layer hidden states (issue 4414 has no flag).

MinMo needs the final hidden state of every position (duplex predictor, speech-LM input). The
decision: mark the transformer body's output (after the final RMSNorm, before the last-token
gather and ``lm_head``) as an extra network output named :data:`HIDDEN_OUTPUT`, while the network
is built. Rejected alternative: an identity ``lm_head`` with ``gather_generation_logits``: sampling
would move out of the engine into the backbone model and the real ``lm_head`` (545M parameters) with it.

At run time the executor returns the marked tensor only when it is requested as an additional model
output, in the ``ExecutorConfig`` and per request (``AdditionalModelOutput(name, gather_context=True)``):
the computed context positions, then one row per generation step. Triton's ``tensorrtllm`` backend
requests neither, so the GPU backbone drives the executor itself
(:mod:`services.gpu_profile.executor_requests`). This module imports ``tensorrt_llm`` lazily so the
rest of the package (and its tests) work without it. UNTESTED on a GPU here: docs/real-model.md.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

HIDDEN_OUTPUT = "hidden_states"
_MARKER = "_minmo_marked_output"


class EngineBuildError(RuntimeError):
    """The build environment cannot make the patched engine (no tensorrt_llm, an unknown model class)."""


def mark_final_hidden_states(model_cls: type, output_name: str = HIDDEN_OUTPUT) -> None:
    """Wrap ``model_cls.forward`` (a TensorRT-LLM decoder body) so its output is also a network output.

    The body returns the normed states, or ``(states, presents)`` with ``use_cache``; only the last
    pipeline rank applies the final norm, so only there is the tensor marked. Idempotent.
    """
    original: Callable[..., Any] = model_cls.forward  # type: ignore[attr-defined]
    if getattr(original, _MARKER, None) == output_name:
        return

    @functools.wraps(original)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        hidden = result[0] if isinstance(result, tuple) else result
        mapping = getattr(self, "mapping", None)
        if mapping is None or mapping.is_last_pp_rank():
            hidden.mark_output(output_name, hidden.dtype)
        return result

    setattr(forward, _MARKER, output_name)
    model_cls.forward = forward  # type: ignore[attr-defined]


def install_for_qwen(output_name: str = HIDDEN_OUTPUT) -> None:
    try:
        from tensorrt_llm.models.qwen.model import QWenModel
    except ImportError as exc:
        raise EngineBuildError(
            "tensorrt_llm is not importable here: run the engine build inside the TensorRT-LLM container "
            f"(the Triton trtllm image) where `trtllm-build` works ({exc})"
        ) from exc
    mark_final_hidden_states(QWenModel, output_name)


def parse_args(argv: list[str] | None) -> tuple[str, list[str]]:
    """``--output-name NAME -- <trtllm-build args>`` -> (NAME, the trtllm-build args untouched)."""
    parser = argparse.ArgumentParser(prog="hidden_states", description="trtllm-build with a hidden-states output")
    parser.add_argument("--output-name", default=HIDDEN_OUTPUT)
    parser.add_argument("build_args", nargs=argparse.REMAINDER, help="-- then trtllm-build's own arguments")
    args = parser.parse_args(argv)
    build_args = args.build_args[1:] if args.build_args[:1] == ["--"] else args.build_args
    return args.output_name, build_args


def main(argv: list[str] | None = None) -> int:
    """``python -m services.gpu_profile.hidden_states --output-name hidden_states -- <trtllm-build args>``."""
    output_name, build_args = parse_args(argv)
    try:
        install_for_qwen(output_name)
        from tensorrt_llm.commands.build import main as trtllm_build
    except (EngineBuildError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.argv = ["trtllm-build", *build_args]
    trtllm_build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
