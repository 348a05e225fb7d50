"""Admission in front of the API: the process's capacity first, then the tenant's limits.

Every RPC that holds Triton streams is admitted: the servicer enters ``session()`` for each Converse,
Transcribe and Synthesize call, so a Transcribe that sends only its config holds one of the same
slots as a conversation (and is shed like one), never a model's stream slot for free. Audio counts
against the tenant's minute: the Converse session and Transcribe charge each chunk received;
Synthesize reserves the most audio its text can produce *before* it runs (``reserve_audio``) and
gives back what it did not produce, so concurrent long syntheses cannot pass the limit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from orchestrator.errors import Unavailable
from orchestrator.limits.shedding import LoadShedder
from orchestrator.limits.tenants import AudioReservation, TenantLimits

logger = logging.getLogger(__name__)


class Admission:
    def __init__(self, shedder: LoadShedder | None = None, tenants: TenantLimits | None = None) -> None:
        self.shedder = shedder
        self.tenants = tenants

    @contextlib.asynccontextmanager
    async def session(self, tenant: str) -> AsyncIterator[None]:
        """Hold a slot of this process and of ``tenant`` while the call lives (Converse, Transcribe, Synthesize)."""
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
            # Redis down or stalled: the slot expires with its TTL instead; the call's own outcome stands, unwaited.
            with contextlib.suppress(Unavailable, TimeoutError):
                async with asyncio.timeout(1.0):
                    await limits.release_session(tenant, stream_id)

    async def charge_audio(self, tenant: str, seconds: float, *, force: bool = False) -> None:
        if self.tenants is not None:
            await self.tenants.charge_audio(tenant, seconds, force=force)

    async def reserve_audio(self, tenant: str, seconds: float) -> AudioReservation | None:
        """Count the most audio a call can make, up front; refused (nothing counted) when it does not fit."""
        if self.tenants is None:
            return None
        return await self.tenants.charge_audio(tenant, seconds)

    async def refund_audio(self, reservation: AudioReservation | None, seconds: float) -> None:
        """Give back what a reservation did not use; a Redis failure here only over-counts, so it is logged."""
        if self.tenants is None or reservation is None or seconds <= 0:
            return
        try:
            await self.tenants.refund_audio(reservation, seconds)
        except Unavailable as exc:
            logger.warning("could not give back %.1f s of reserved audio: %s", seconds, exc)

    async def close(self) -> None:
        if self.shedder is not None:
            await self.shedder.close()
