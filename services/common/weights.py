"""One on-disk format for every stage: ``model.safetensors`` plus ``config.json``.

The same format holds the seeded smoke weights and weights imported from real checkpoints, so the
Triton adapters load both through one code path. Loading is strict: a missing, unexpected or
mis-shaped tensor fails at load time with the key named, never at the first request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class WeightsError(ValueError):
    """A weights folder that cannot be loaded; the message names the folder and what to fix."""


class StageConfig(Protocol):
    """What every stage config dataclass provides so it can round-trip through ``config.json``."""

    def to_dict(self) -> dict[str, Any]: ...


ConfigT = TypeVar("ConfigT")
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def save_stage(directory: Path, module: torch.nn.Module, config: StageConfig, *, stage: str, profile: str) -> None:
    """Write ``module``'s weights and its config so that :func:`load_stage` rebuilds it exactly."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous().clone() for name, t in module.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"stage": stage, "profile": profile})
    meta = {"stage": stage, "profile": profile, "config": config.to_dict()}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_stage_config(directory: Path, *, stage: str) -> tuple[dict[str, Any], str]:
    """Return ``(config dict, profile name)`` of a stage folder, checking it holds ``stage``."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsError(
            f"{config_path} is missing: build the smoke weights with `make weights` "
            f"or import real checkpoints into {directory.parent}"
        )
    meta = json.loads(config_path.read_text())
    if meta.get("stage") != stage:
        raise WeightsError(f"{config_path} holds stage {meta.get('stage')!r}, expected {stage!r}")
    return dict(meta["config"]), str(meta.get("profile", "unknown"))


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Copy ``state`` into ``module``, failing with every missing, unexpected or mis-shaped key named."""
    problems = key_problems(
        {k: tuple(v.shape) for k, v in module.state_dict().items()},
        {k: tuple(v.shape) for k, v in state.items()},
        lambda key, model, file: f"{key}: file {file} != model {model}",
    )
    if problems:
        raise WeightsError(f"{source} does not fit the model config: " + " | ".join(problems))
    module.load_state_dict(state, strict=True)


def load_stage_on_meta(directory: Path, *, stage: str, build: Callable[[dict[str, Any]], ModuleT]) -> ModuleT:
    """Load a stage whose module is built on the meta device, so 7B weights are not initialised twice.

    Only for modules whose every tensor is in the state dict: ``to_empty`` leaves the rest unset.
    """
    config_dict, _profile = read_stage_config(directory, stage=stage)
    with torch.device("meta"):
        module = build(config_dict)
    module.to_empty(device="cpu")
    load_state_strict(module, load_stage_tensors(directory), source=str(directory))
    return module.eval()


def load_stage_tensors(directory: Path) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing: run `make weights` (smoke) or import checkpoints (minmo)")
    return load_file(str(path))


Shape = tuple[int, ...]


def key_problems(
    expected: Mapping[str, Shape], got: Mapping[str, Shape], mis_shaped: Callable[[str, Shape, Shape], str]
) -> list[str]:
    """Every missing, unexpected and mis-shaped key as message parts; empty when ``got`` fits ``expected``.

    Shared by strict loading and the checkpoint importers; ``mis_shaped(key, expected, got)`` words a
    shape mismatch for the caller's reader (a weights file, or a checkpoint being imported).
    """
    shared = sorted(set(expected) & set(got))
    # tuple(): shapes may come as lists (safetensors headers) or torch.Size.
    shapes = [mis_shaped(k, expected[k], got[k]) for k in shared if tuple(expected[k]) != tuple(got[k])]
    problems = []
    if missing := set(expected) - set(got):
        problems.append(f"missing keys: {listed(missing)}")
    if unexpected := set(got) - set(expected):
        problems.append(f"unexpected keys: {listed(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped tensors: {'; '.join(shapes[:12])}")
    return problems


def listed(keys: Iterable[str], limit: int = 12) -> str:
    items = sorted(keys)
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
