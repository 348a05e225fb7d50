"""``minmo gpu ...``: generate the GPU model repository and the engine build commands from values."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.gpu_profile.templating import TemplateError
from services.gpu_profile.values import GpuValues, ValuesError


def _config(args: argparse.Namespace) -> int:
    from services.gpu_profile.generate import write_repository

    try:
        written = write_repository(GpuValues.load(args.values), args.out)
    except (ValuesError, TemplateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"GPU model repository in {args.out}: {len(written)} files")
    for path in written:
        print(f"  {path}")
    return 0


def _build_cmd(args: argparse.Namespace) -> int:
    from services.gpu_profile import engine

    return engine.main(
        ["--values", str(args.values), "--python", args.python, *([] if args.execute else ["--dry-run"])]
    )


def add_gpu_commands(commands: Any) -> None:
    """Attach ``gpu config`` and ``gpu build-cmd`` to the ``minmo`` subparsers."""
    gpu = commands.add_parser("gpu", help="the GPU profile: TensorRT-LLM backbone and KIND_GPU models")
    actions = gpu.add_subparsers(dest="gpu_action", required=True)
    config = actions.add_parser("config", help="write the GPU model repository from a values file")
    config.add_argument("--values", type=Path, required=True, help="the deployment's values YAML")
    config.add_argument("--out", type=Path, required=True, help="folder to write the model repository into")
    config.set_defaults(run=_config)
    build = actions.add_parser("build-cmd", help="print (or --run) the checkpoint conversion and engine build")
    build.add_argument("--values", type=Path, required=True)
    build.add_argument("--python", default=sys.executable, help="interpreter that has tensorrt_llm installed")
    # dest differs from "run", which holds the subcommand's function.
    build.add_argument("--run", dest="execute", action="store_true", help="run the commands instead of printing them")
    build.set_defaults(run=_build_cmd)
