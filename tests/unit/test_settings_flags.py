"""The trainers' settings as flags: every field a flag, its default the field's, booleans as --x/--no-x."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from services.common.settings_flags import add_settings_flags, settings_from_args


@dataclass(frozen=True)
class Knobs:
    steps: int = 10
    lr: float = 0.5
    augment: bool = True


def parse(*argv: str) -> Knobs:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, Knobs)
    return settings_from_args(Knobs, parser.parse_args(list(argv)))


def test_defaults_and_values_come_through() -> None:
    assert parse() == Knobs()
    assert parse("--steps", "3", "--lr", "0.1") == Knobs(steps=3, lr=0.1)


def test_a_boolean_is_switched_off_by_its_no_flag_not_by_a_false_string() -> None:
    assert parse("--no-augment").augment is False
    assert parse("--augment").augment is True
    with pytest.raises(SystemExit):
        parse("--augment", "False")  # would have been read as True with type=bool
