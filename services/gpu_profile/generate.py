"""Write the GPU model repository from the values file: five configs, the executor backbone, the stage adapters.

Layout written to ``--out``: ``backbone/`` (a Python model driving the TensorRT-LLM executor itself,
same contract as the CPU backbone) and the KIND_GPU variants of ``encoder``, ``duplex``,
``speech_lm``, ``vocoder`` whose ``1/model.py`` are the CPU profile's own adapters: the contract and
the code are shared, only placement and dtype differ. The configs are the CPU definitions placed on
the GPU (:mod:`services.gpu_profile.configs`), filled from the values. There is no ``tensorrt_llm``
model: Triton's TensorRT-LLM backend cannot return the engine's hidden states
(services/gpu_profile/executor_requests.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.gpu_profile.configs import gpu_configs
from services.gpu_profile.templating import render_all
from services.gpu_profile.values import STAGES, STEP_SCHEDULED, GpuValues
from services.model_configs.pbtxt import render
from services.model_configs.repository import CPU_REPOSITORY

# The GPU backbone's model.py; the stages reuse the CPU adapters.
TEMPLATES = Path(__file__).parent / "templates"
MODELS = ("backbone", *STAGES)

__all__ = ["CPU_REPOSITORY", "MODELS", "TEMPLATES", "render_configs", "template_values", "write_repository"]


def template_values(values: GpuValues) -> dict[str, str]:
    """The flat strings the configs' ``${...}`` read; derived ones (dtype names, CSV lists) are computed here."""
    flat = {
        "engine_dir": values.engine_dir,
        "weights_dir": values.weights_dir,
        "engine_dtype": values.engine_dtype,
        "stage_dtype": values.stage_dtype,
        "max_batch_size": str(values.max_batch_size),
        "max_seq_len": str(values.max_seq_len),
        "max_prompt_rows": str(values.max_prompt_rows),
        "kv_cache_free_gpu_mem_fraction": str(values.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": "true" if values.enable_kv_cache_reuse else "false",
        "batch_scheduler_policy": values.batch_scheduler_policy,
        "gpu_device_ids_csv": ",".join(str(i) for i in values.gpu_device_ids),
    }
    flat.update({f"{model}_count": str(values.instance_count(model)) for model in ("backbone", *STAGES)})
    flat.update({f"{stage}_max_step_batch": str(values.step_batch(stage)) for stage in STEP_SCHEDULED})
    flat["backbone_worker_threads"] = str(values.backbone_worker_threads)
    return flat


def render_configs(values: GpuValues) -> dict[str, str]:
    configs = gpu_configs()
    templates = {model: render(configs[model]) for model in MODELS}
    return render_all(templates, template_values(values))


def write_repository(values: GpuValues, out: Path, cpu_repository: Path = CPU_REPOSITORY) -> list[Path]:
    """Write (or overwrite) the repository under ``out``; returns the files written."""
    written = []
    for model, text in render_configs(values).items():
        folder = out / model
        (folder / "1").mkdir(parents=True, exist_ok=True)
        config = folder / "config.pbtxt"
        config.write_text(text)
        written.append(config)
    bls = out / "backbone" / "1" / "model.py"
    shutil.copyfile(TEMPLATES / "backbone_model.py.tmpl", bls)
    written.append(bls)
    for stage in STAGES:
        adapter = out / stage / "1" / "model.py"
        shutil.copyfile(cpu_repository / stage / "1" / "model.py", adapter)
        written.append(adapter)
    return written
