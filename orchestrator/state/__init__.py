"""Session state in Redis: the truth any orchestrator replica resumes a session from.

``SessionStore`` keeps each session's config, ordered turn history (with the spoken turns' encoder
embeddings), resume cursor and owner lease; ``store.py`` documents the key layout.
"""

from orchestrator.state.errors import SessionNotFound, TurnConflict
from orchestrator.state.records import SessionRecord, StoredTurn
from orchestrator.state.store import SessionStore, build_session_store

__all__ = [
    "SessionNotFound",
    "SessionRecord",
    "SessionStore",
    "StoredTurn",
    "TurnConflict",
    "build_session_store",
]
