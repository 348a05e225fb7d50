"""The calling tenant, as the auth interceptor established it, for the handlers of the current call.

A context variable rather than a parameter: the servicer's method signatures are gRPC's, and the
value must follow the call into the tasks it spawns (a Converse session's reader task).
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from orchestrator.state.records import DEFAULT_TENANT

__all__ = ["DEFAULT_TENANT", "current_tenant", "set_tenant", "valid_tenant"]

# A tenant names Redis keys (``tenant:<name>:...``), so no ':' and nothing a key pattern would read specially.
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_TENANT: ContextVar[str] = ContextVar("minmo_tenant", default=DEFAULT_TENANT)


def current_tenant() -> str:
    return _TENANT.get()


def set_tenant(tenant: str) -> None:
    """Bind ``tenant`` to the running call (its task's context); the auth interceptor's job only."""
    _TENANT.set(tenant)


def valid_tenant(name: object) -> str | None:
    """``name`` when a credential may name it as its tenant, else None.

    ``default`` is the tenant of every call under ``--auth none`` and of every session stored before
    tenants existed: a token or certificate that claimed it would read and resume all of those.
    """
    if not isinstance(name, str) or name == DEFAULT_TENANT or _TENANT_NAME.fullmatch(name) is None:
        return None
    return name
