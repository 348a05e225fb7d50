"""Stage folders written by the importers, in the format of :mod:`services.common.weights`.

An importer writes ``model.safetensors`` and a ``config.json`` that :func:`read_stage_config`
reads, plus two keys only importers use: ``source`` (where the tensors came from) and ``pending``
(parts still to import; the encoder and speech_lm stages each combine a public checkpoint with a
MinMo projector). A pending folder fails the strict load naming the projector keys it lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from services.common.weights import CONFIG_FILE, WEIGHTS_FILE, StageConfig
from services.importers.errors import CheckpointError

PROFILE = "minmo"


def write_config(
    directory: Path,
    config: StageConfig,
    *,
    stage: str,
    sources: dict[str, str],
    pending: list[str] | None = None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"stage": stage, "profile": PROFILE, "config": config.to_dict(), "sources": sources}
    if pending:
        meta["pending"] = pending
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_stage(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    config: StageConfig,
    *,
    stage: str,
    sources: dict[str, str],
    pending: list[str] | None = None,
) -> None:
    """Write a whole stage folder (tensors fit in memory: everything but the 7B backbone)."""
    directory.mkdir(parents=True, exist_ok=True)
    contiguous = {k: t.detach().contiguous() for k, t in tensors.items()}
    save_file(contiguous, str(directory / WEIGHTS_FILE), metadata={"stage": stage, "profile": PROFILE})
    write_config(directory, config, stage=stage, sources=sources, pending=pending)


def read_meta(directory: Path, *, stage: str, needed_by: str, import_hint: str) -> dict[str, Any]:
    """The ``config.json`` of an already imported stage, or a CheckpointError saying which import to run."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{needed_by} needs the {stage} stage in {directory}: run `{import_hint}` first")
    meta = json.loads(path.read_text())
    if meta.get("stage") != stage:
        raise CheckpointError(f"{path} holds stage {meta.get('stage')!r}, expected {stage!r}")
    return dict(meta)


def read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / WEIGHTS_FILE))
