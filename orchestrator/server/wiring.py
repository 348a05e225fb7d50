"""Builds ``MinMoServicer``: which handler serves which part of the API, imported and registered here.

The four builders are imported directly, so this file is the main edge of the code: from here a
reader (or a tool following imports) reaches the Converse sessions, the Transcribe and Synthesize
tasks and the session store. A handler that fails to import fails the start; a servicer built
without a handler (tests do) answers UNIMPLEMENTED for its methods.
"""

from __future__ import annotations

from orchestrator.converse.handler import build_converse_handler
from orchestrator.server.contracts import ServerDeps
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import build_session_reader
from orchestrator.tasks.handlers import build_synthesize_handler, build_transcribe_handler


def build_servicer(deps: ServerDeps) -> MinMoServicer:
    return MinMoServicer(
        sessions=build_session_reader(deps),
        converse=build_converse_handler(deps),
        transcribe=build_transcribe_handler(deps),
        synthesize=build_synthesize_handler(deps),
        admission=deps.admission,
        first_event_seconds=deps.settings.first_event_seconds,
    )
