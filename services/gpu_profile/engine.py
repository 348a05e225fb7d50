"""The engine build as two command lines generated from the values file, printed or run.

1. TensorRT-LLM's Qwen ``convert_checkpoint.py``: HF folder -> TensorRT-LLM checkpoint (dtype and
   weight-only quantisation decided here).
2. ``trtllm-build`` with its usual flags, run in-process by :mod:`services.gpu_profile.hidden_states`
   so the network gets the extra ``hidden_states`` output (NVIDIA/TensorRT-LLM issue 4414: there
   is no flag for it).

``scripts/build_trtllm_engine.sh --values v.yaml --dry-run`` prints both.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.gpu_profile.hidden_states import HIDDEN_OUTPUT
from services.gpu_profile.values import GpuValues, ValuesError


@dataclass(frozen=True)
class BuildCommands:
    convert: list[str]
    build: list[str]

    def lines(self) -> list[str]:
        return [shlex.join(self.convert), shlex.join(self.build)]


def convert_args(values: GpuValues, python: str = "python") -> list[str]:
    args = [
        python,
        values.convert_script,
        "--model_dir",
        values.hf_model_dir,
        "--output_dir",
        values.checkpoint_dir,
        "--dtype",
        values.engine_dtype,
        "--tp_size",
        str(len(values.gpu_device_ids)),
    ]
    if values.weight_only != "none":
        args += ["--use_weight_only", "--weight_only_precision", values.weight_only]
    return args


def trtllm_build_args(values: GpuValues) -> list[str]:
    """Flags of ``trtllm-build``; each one is a decision, explained where it is not obvious.

    - ``max_prompt_embedding_table_size``: speech rows of the whole in-flight batch (p-tuning table).
    - ``use_paged_context_fmha``: required for KV-cache reuse and chunked context, which is what
      makes resending a stream's whole context per request cheap.
    - no ``gather_generation_logits`` / ``gather_context_logits``: logits stay in the engine; the
      hidden states come out through the marked output instead.
    - ``workers 1``: the build must run in this process, where the network patch is installed.
    """
    return [
        "--checkpoint_dir",
        values.checkpoint_dir,
        "--output_dir",
        values.engine_dir,
        "--gemm_plugin",
        "auto",
        "--gpt_attention_plugin",
        "auto",
        "--remove_input_padding",
        "enable",
        "--paged_kv_cache",
        "enable",
        "--use_paged_context_fmha",
        "enable",
        "--max_batch_size",
        str(values.max_batch_size),
        "--max_input_len",
        str(values.max_input_len),
        "--max_seq_len",
        str(values.max_seq_len),
        "--max_num_tokens",
        str(values.max_num_tokens),
        "--max_prompt_embedding_table_size",
        str(values.max_prompt_embedding_table_size),
        "--workers",
        "1",
    ]


def build_commands(values: GpuValues, python: str = "python") -> BuildCommands:
    build = [python, "-m", "services.gpu_profile.hidden_states", "--output-name", HIDDEN_OUTPUT, "--"]
    return BuildCommands(convert=convert_args(values, python), build=build + trtllm_build_args(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_trtllm_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, required=True, help="the deployment's values YAML")
    parser.add_argument("--dry-run", action="store_true", help="print the two commands, run nothing")
    parser.add_argument("--python", default=sys.executable, help="interpreter that has tensorrt_llm installed")
    args = parser.parse_args(argv)
    try:
        commands = build_commands(GpuValues.load(args.values), python=args.python)
    except (ValuesError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line, argv_ in zip(commands.lines(), (commands.convert, commands.build), strict=True):
        print(line, flush=True)
        if not args.dry_run and subprocess.run(argv_).returncode != 0:
            print(f"error: the step above failed; fix it and run again: {line}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
