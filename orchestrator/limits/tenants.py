"""Per-tenant limits kept in Redis: concurrent sessions, and audio seconds per minute.

Sessions: a sorted set per tenant of live streams, each with an expiry the stream refreshes while it
runs, so a replica that dies without releasing frees its slots within ``session_ttl_seconds``.
Audio: a fixed one-minute window counted in milliseconds. A fixed window lets a tenant use up to
twice the rate across a window boundary; it is the price of one key and one script call per chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.typing import EncodableT

from orchestrator.errors import ResourceExhausted
from orchestrator.limits import scripts
from orchestrator.state.errors import unavailable_on_redis_failure

WINDOW_MS = 60_000
# A refused session is told to come back after this long: sessions last minutes, so no exact time exists.
SESSION_RETRY_MS = 2_000


@dataclass(frozen=True)
class TenantLimitSettings:
    max_sessions: int = 0  # 0: unlimited
    audio_seconds_per_minute: float = 0.0  # 0: unlimited
    session_ttl_seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.max_sessions > 0 or self.audio_seconds_per_minute > 0


@dataclass(frozen=True)
class AudioReservation:
    """Audio counted against a tenant's minute: the window's counter and the milliseconds counted."""

    key: str
    cost_ms: int


class TenantLimitExceeded(ResourceExhausted):
    """The tenant is over one of its limits; ``retry_after_ms`` says when to try again."""

    def __init__(self, tenant: str, what: str, retry_after_ms: int) -> None:
        seconds = retry_after_ms / 1000
        super().__init__(f"tenant {tenant!r} is over its limit of {what}; retry in {seconds:.1f} s", retry_after_ms)
        self.tenant = tenant


class TenantLimits:
    def __init__(self, redis: Redis, settings: TenantLimitSettings, *, prefix: str = "minmo:") -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = prefix
        self._acquire = redis.register_script(scripts.ACQUIRE_SESSION)
        self._charge = redis.register_script(scripts.CHARGE_AUDIO)
        self._refund = redis.register_script(scripts.REFUND_AUDIO)

    def _sessions_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:sessions"

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.settings.session_ttl_seconds * 1000))

    @unavailable_on_redis_failure
    async def acquire_session(self, tenant: str, stream_id: str) -> None:
        """Count a live session for ``tenant`` (or refresh it); TenantLimitExceeded at the limit."""
        if self.settings.max_sessions <= 0:
            return
        args: list[EncodableT] = [stream_id, self.settings.max_sessions, self._ttl_ms]
        if not await self._acquire(keys=[self._sessions_key(tenant)], args=args):
            what = f"{self.settings.max_sessions} concurrent sessions"
            raise TenantLimitExceeded(tenant, what, SESSION_RETRY_MS)

    @unavailable_on_redis_failure
    async def release_session(self, tenant: str, stream_id: str) -> None:
        if self.settings.max_sessions > 0:
            await self.redis.zrem(self._sessions_key(tenant), stream_id)

    @unavailable_on_redis_failure
    async def charge_audio(self, tenant: str, seconds: float, *, force: bool = False) -> AudioReservation | None:
        """Count ``seconds`` of audio; TenantLimitExceeded (nothing counted) when it would pass the limit.

        ``force`` counts it regardless: for audio already received. Returns what was counted, so a
        reservation (an upper bound counted before the audio exists) can give back what went unused;
        None when the tenant's audio is unlimited.
        """
        limit = self.settings.audio_seconds_per_minute
        if limit <= 0:
            return None
        cost_ms = max(0, math.ceil(seconds * 1000))
        key = f"{self.prefix}tenant:{tenant}:audio:"
        args: list[EncodableT] = [cost_ms, round(limit * 1000), WINDOW_MS, 1 if force else 0]
        retry_after_ms, counter = await self._charge(keys=[key], args=args)
        if int(retry_after_ms):
            what = f"{limit:g} audio seconds per minute"
            if cost_ms > limit * 1000:
                what += f" (this call needs up to {cost_ms / 1000:.1f} s in one minute: make it smaller)"
            raise TenantLimitExceeded(tenant, what, int(retry_after_ms))
        return AudioReservation(counter.decode() if isinstance(counter, bytes) else str(counter), cost_ms)

    @unavailable_on_redis_failure
    async def refund_audio(self, reservation: AudioReservation, seconds: float) -> None:
        """Give back ``seconds`` of a reservation (at most what it counted), in the window it was counted in."""
        back_ms = min(reservation.cost_ms, max(0, math.floor(seconds * 1000)))
        if back_ms:
            await self._refund(keys=[reservation.key], args=[back_ms])
