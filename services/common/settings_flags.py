"""A frozen settings dataclass as command-line flags: one ``--field-name`` per field, its default the field's.

The trainers keep every knob in one dataclass (recorded in their ``metrics.json``); this exposes the
same knobs on the command line without writing each flag twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """``--field-name`` for every field of ``cls``, typed and defaulted by its default instance."""
    defaults = cls()
    for field in dataclasses.fields(cls):
        value = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(value, bool):  # type=bool would read "--flag False" as True
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)


def settings_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The ``cls`` instance the parsed flags describe."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def trainer_parser(doc: str | None, *, cache_dir: Path, cache_help: str, threads: int) -> argparse.ArgumentParser:
    """The flags every smoke trainer takes: ``--out``, ``--cache-dir``, ``--threads`` (results are pinned to it)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--cache-dir", type=Path, default=cache_dir, help=cache_help)
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads (results are pinned to it)")
    return parser


def write_run_metrics(
    path: Path, metrics: dict[str, Any], *, data_seconds: float, train_seconds: float, threads: int
) -> None:
    """Write a trainer's ``metrics.json`` with how the run went, so a checkpoint says how it was made."""
    import torch  # the trainers have it; the settings helpers above need no torch

    run = {
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "threads": threads,
        "torch": torch.__version__,
    }
    metrics.update(run)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
