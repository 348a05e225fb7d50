"""The one error every importer raises, and the key/shape check that produces most of them."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.weights import Shape, WeightsError, key_problems


class CheckpointError(WeightsError):
    """A source checkpoint that cannot be imported; the message names the file, the keys and what to fix."""


def check_keys(expected: Mapping[str, Shape], got: Mapping[str, Shape], *, source: str) -> None:
    """Fail naming every missing, unexpected and mis-shaped tensor (expected vs got) before anything is written.

    ``got`` holds the source keys already renamed to ours; the message shows our names, which the
    importer's docstring maps back to the checkpoint's.
    """
    problems = key_problems(expected, got, lambda key, want, have: f"{key}: expected {tuple(want)}, got {tuple(have)}")
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems))
