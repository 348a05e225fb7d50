"""The committed CPU configs and their definition: write them, or name the ones that drifted."""

from __future__ import annotations

from pathlib import Path

from services.model_configs.definitions import CPU_CONFIGS
from services.model_configs.pbtxt import render

CPU_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
REGENERATE = "python -m services.model_configs"


def config_path(repository: Path, model: str) -> Path:
    return repository / model / "config.pbtxt"


def cpu_config_text(model: str) -> str:
    return render(CPU_CONFIGS[model])


def stale_configs(repository: Path = CPU_REPOSITORY) -> list[Path]:
    """The configs under ``repository`` whose text is not what the definition renders (missing ones too)."""
    stale = []
    for model in CPU_CONFIGS:
        path = config_path(repository, model)
        if not path.is_file() or path.read_text() != cpu_config_text(model):
            stale.append(path)
    return stale


def write_configs(repository: Path = CPU_REPOSITORY) -> list[Path]:
    written = []
    for model in CPU_CONFIGS:
        path = config_path(repository, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cpu_config_text(model))
        written.append(path)
    return written
