"""The one place that reads ``parameters`` from a model's ``config.pbtxt``.

Triton hands ``initialize()`` the model config as JSON; template placeholders such as
``${weights_dir}`` that nobody filled are treated as unset here, and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_PLACEHOLDER = re.compile(r"^\$\{[^}]*\}$")
WEIGHTS_ENV = "MINMO_WEIGHTS_DIR"
T = TypeVar("T")


class ParameterError(ValueError):
    """A model parameter is missing or malformed; raised from ``initialize()`` so the model fails to load."""


@dataclass(frozen=True)
class ModelParameters:
    model_name: str
    values: dict[str, str]

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ModelParameters:
        config = json.loads(args["model_config"])
        raw = config.get("parameters", {}) or {}
        values = {}
        for key, entry in raw.items():
            value = entry.get("string_value", "") if isinstance(entry, dict) else str(entry)
            if value and not _PLACEHOLDER.match(value.strip()):
                values[key] = value.strip()
        return cls(model_name=str(config.get("name", args.get("model_name", "?"))), values=values)

    def get_str(self, key: str, default: str | None = None) -> str:
        return self._get(key, default, str, "a string")

    def get_int(self, key: str, default: int | None = None) -> int:
        return self._get(key, default, int, "an integer")

    def get_float(self, key: str, default: float | None = None) -> float:
        return self._get(key, default, float, "a number")

    def _get(self, key: str, default: T | None, convert: Callable[[str], T], kind: str) -> T:
        raw = self.values.get(key)
        if raw is None:
            if default is None:
                raise ParameterError(f"model {self.model_name!r}: parameter {key!r} is required in config.pbtxt")
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            raise ParameterError(f"model {self.model_name!r}: parameter {key!r}={raw!r} is not {kind}") from exc

    def weights_dir(self, stage: str) -> Path:
        """Where this stage's weights live: the ``weights_dir`` parameter, else ``$MINMO_WEIGHTS_DIR/<stage>``.

        The environment fallback is read here, at model load, so one model repository serves
        both the smoke weights of a laptop and the volume a Kubernetes pod mounts.
        """
        if "weights_dir" in self.values:
            path = Path(self.values["weights_dir"])
        elif os.environ.get(WEIGHTS_ENV):
            path = Path(os.environ[WEIGHTS_ENV]) / stage
        else:
            raise ParameterError(
                f"model {self.model_name!r}: no weights location; set parameter 'weights_dir' in config.pbtxt "
                f"or the environment variable {WEIGHTS_ENV} (the local stack sets it to weights/smoke)"
            )
        if not path.is_dir():
            raise ParameterError(
                f"model {self.model_name!r}: weights folder {path} does not exist; "
                "run `make weights` for the smoke profile"
            )
        return path
