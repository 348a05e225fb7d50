"""The calling tenant, as the auth interceptor established it, for the handlers of the current call.

A context variable rather than a parameter: the servicer's method signatures are gRPC's, and the
value must follow the call into the tasks it spawns (a Converse session's reader task).
"""

from __future__ import annotations

from contextvars import ContextVar

from orchestrator.state.records import DEFAULT_TENANT

__all__ = ["DEFAULT_TENANT", "current_tenant", "set_tenant"]

_TENANT: ContextVar[str] = ContextVar("minmo_tenant", default=DEFAULT_TENANT)


def current_tenant() -> str:
    return _TENANT.get()


def set_tenant(tenant: str) -> None:
    """Bind ``tenant`` to the running call (its task's context); the auth interceptor's job only."""
    _TENANT.set(tenant)
