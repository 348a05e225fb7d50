"""Admission in front of the API: the process's capacity first, then the tenant's limits.

The servicer enters ``session()`` for every Converse stream and ``task()`` for Transcribe and
Synthesize (stateless, but their audio counts against the tenant's minute); the Converse session
calls ``charge_audio`` for each chunk it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from orchestrator.errors import Unavailable
from orchestrator.limits.shedding import LoadShedder
from orchestrator.limits.tenants import TenantLimits


class Admission:
    def __init__(self, shedder: LoadShedder | None = None, tenants: TenantLimits | None = None) -> None:
        self.shedder = shedder
        self.tenants = tenants

    @contextlib.asynccontextmanager
    async def session(self, tenant: str) -> AsyncIterator[None]:
        """Hold a session slot of this process and of ``tenant`` while the stream lives."""
        async with contextlib.AsyncExitStack() as stack:
            if self.shedder is not None:
                await stack.enter_async_context(self.shedder.session())
            if self.tenants is not None and self.tenants.settings.max_sessions > 0:
                await stack.enter_async_context(self._tenant_slot(tenant))
            yield

    @contextlib.asynccontextmanager
    async def _tenant_slot(self, tenant: str) -> AsyncIterator[None]:
        assert self.tenants is not None
        limits = self.tenants
        stream_id = uuid.uuid4().hex
        await limits.acquire_session(tenant, stream_id)

        async def keep() -> None:
            # A Redis outage skips a beat; the slot outlives it by the TTL, and the session is not ended for it.
            while True:
                await asyncio.sleep(limits.settings.session_ttl_seconds / 3)
                with contextlib.suppress(Unavailable):
                    await limits.acquire_session(tenant, stream_id)

        keeper = asyncio.create_task(keep())
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
            await limits.release_session(tenant, stream_id)

    async def charge_audio(self, tenant: str, seconds: float, *, force: bool = False) -> None:
        if self.tenants is not None:
            await self.tenants.charge_audio(tenant, seconds, force=force)

    async def close(self) -> None:
        if self.shedder is not None:
            await self.shedder.close()
