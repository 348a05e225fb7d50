"""The one error every importer raises, and the key/shape check that produces most of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.common.weights import WeightsError

Shape = tuple[int, ...]


class CheckpointError(WeightsError):
    """A source checkpoint that cannot be imported; the message names the file, the keys and what to fix."""


def _listed(keys: Iterable[str], limit: int = 12) -> str:
    items = sorted(keys)
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_keys(expected: Mapping[str, Shape], got: Mapping[str, Shape], *, source: str) -> None:
    """Fail naming every missing, unexpected and mis-shaped tensor (expected vs got) before anything is written.

    ``got`` holds the source keys already renamed to ours; the message shows our names, which the
    importer's docstring maps back to the checkpoint's.
    """
    missing = set(expected) - set(got)
    unexpected = set(got) - set(expected)
    mis_shaped = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(got[k])}"
        for k in sorted(set(expected) & set(got))
        if tuple(expected[k]) != tuple(got[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if mis_shaped:
        problems.append(f"mis-shaped tensors: {'; '.join(mis_shaped[:12])}")
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems))
