"""Round-tripping stage configs through ``config.json``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Self


def check_fields(cls: type, values: Mapping[str, Any]) -> None:
    """Refuse keys the config dataclass does not have: a typo in ``config.json`` must not be dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")


class FlatConfig:
    """``to_dict`` / ``from_dict`` for a config dataclass whose fields are all plain values."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        check_fields(cls, values)
        return cls(**values)
