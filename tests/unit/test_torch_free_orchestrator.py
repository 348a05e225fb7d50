"""The orchestrator runs without torch: every module of its package imports with torch made unimportable.

The orchestrator's image installs only the project's own dependencies (no torch: the models' set is the
`models` extra). A module that pulled torch in through a shared helper (the chat prompt, the tokenizer, the
decision policy) would break that image at start-up; here it fails a test. `tests/integration/
test_torch_free_serve.py` serves a real conversation the same way.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import orchestrator

ROOT = Path(__file__).resolve().parents[2]

# Run first in a fresh interpreter: from here on `import torch` (or any torch submodule) raises ImportError.
BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is not installed in the orchestrator's image (something imported {name})")
sys.meta_path.insert(0, _NoTorch())
"""


def orchestrator_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(orchestrator.__path__, prefix="orchestrator.")
        if "gen" not in info.name
    )


def test_every_orchestrator_module_imports_without_torch() -> None:
    modules = orchestrator_modules()
    assert len(modules) > 60
    script = (
        BLOCK_TORCH
        + f"""
import importlib
failed = []
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{{name}}: {{exc}}")
from orchestrator.cli import build_parser
build_parser()
print("\\n".join(failed) or "ok")
sys.exit(1 if failed else 0)
"""
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_blocker_really_blocks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + "import services.backbone"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0 and "torch is not installed" in done.stderr
