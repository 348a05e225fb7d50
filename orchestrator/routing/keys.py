"""Redis key names shared by the router (orchestrator) and the autoscaler: one definition, two users.

The layout is the agreed contract (FLAGS.md); ``prefix`` defaults to ``minmo:`` like the session store.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "minmo:"


@dataclass(frozen=True)
class RoutingKeys:
    prefix: str = DEFAULT_PREFIX

    def pod_sessions(self, pool: str, pod: str) -> str:
        """SET of session ids pinned to ``pod`` (the router SADDs on pin, SREMs on release)."""
        return f"{self.prefix}pool:{pool}:pod:{pod}:sessions"

    def draining(self, pool: str) -> str:
        """SET of pod names the autoscaler drains: the router pins no new session there."""
        return f"{self.prefix}pool:{pool}:draining"

    def session_pins(self, session_id: str) -> str:
        """HASH pool -> pod name: the pin, with the session's TTL so a crashed session's pin expires."""
        return f"{self.prefix}session:{session_id}:pods"
