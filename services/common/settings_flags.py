"""A frozen settings dataclass as command-line flags: one ``--field-name`` per field, its default the field's.

The trainers keep every knob in one dataclass (recorded in their ``metrics.json``); this exposes the
same knobs on the command line without writing each flag twice.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """``--field-name`` for every field of ``cls``, typed and defaulted by its default instance."""
    defaults = cls()
    for field in dataclasses.fields(cls):
        value = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(value), default=value)


def settings_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The ``cls`` instance the parsed flags describe."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
