"""GetSession / DeleteSession over the Redis session store: the ``SessionReader`` the servicer delegates to.

The store keeps a session's config in its dict form (``SessionSettings.to_dict``); this adapter turns
it back into the API's ``SessionConfig``. Unknown or expired ids, and another tenant's sessions, raise
the store's ``SessionNotFound`` (a ``NotFound``, the same message for both), an unreachable Redis its
``Unavailable``.
"""

from __future__ import annotations

from typing import Any

from minmo.v1 import minmo_pb2

from orchestrator.converse.settings import SessionSettings
from orchestrator.routing.sessions import SessionRouting
from orchestrator.security.tenant import current_tenant
from orchestrator.server.contracts import ServerDeps
from orchestrator.state.store import SessionStore


def _config_proto(config: dict[str, Any]) -> minmo_pb2.SessionConfig:
    return SessionSettings.from_dict(config).to_proto()


class StoreSessionReader:
    def __init__(self, store: SessionStore, routing: SessionRouting | None = None) -> None:
        self.store = store
        self.routing = routing  # with routing, a deleted session's pod pins go too

    async def get(self, session_id: str) -> minmo_pb2.Session:
        return await self.store.session_proto(session_id, _config_proto, tenant=current_tenant())

    async def delete(self, session_id: str) -> None:
        await self.store.delete(session_id, tenant=current_tenant())
        if self.routing is not None:
            await self.routing.release(session_id)


def build_session_reader(deps: ServerDeps) -> StoreSessionReader:
    return StoreSessionReader(SessionStore(deps.redis), deps.routing)
