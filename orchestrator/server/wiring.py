"""Builds ``MinMoServicer`` from whichever handler modules this checkout has.

The handlers are imported lazily by name, so a process whose checkout lacks one still serves the
rest, and answers UNIMPLEMENTED for the missing method (with a warning in the log). Only the named
module or function being absent counts as "not installed": a module that fails to import for any
other reason is a bug and fails the start.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from orchestrator.server.contracts import Builder, ServerDeps
from orchestrator.server.servicer import MinMoServicer

logger = logging.getLogger(__name__)

BUILDERS = {
    "sessions": "orchestrator.server.sessions:build_session_reader",
    "converse": "orchestrator.converse.handler:build_converse_handler",
    "transcribe": "orchestrator.tasks.handlers:build_transcribe_handler",
    "synthesize": "orchestrator.tasks.handlers:build_synthesize_handler",
}


def load_builder(spec: str) -> Builder | None:
    """The builder ``module:function`` names, or None when the module or function does not exist (yet)."""
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        absent = exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + "."))
        if not absent:
            raise
        return None
    builder: Builder | None = getattr(module, function, None)
    return builder


def build_servicer(deps: ServerDeps) -> MinMoServicer:
    handlers: dict[str, Any] = {}
    for role, spec in BUILDERS.items():
        builder = load_builder(spec)
        if builder is None:
            logger.warning("%s is not installed: the %s methods answer UNIMPLEMENTED", spec, role)
            handlers[role] = None
        else:
            handlers[role] = builder(deps)
    return MinMoServicer(**handlers, admission=deps.admission, first_event_seconds=deps.settings.first_event_seconds)
