"""The routing rule, free of I/O, so the Redis script and the autoscaler's trace replay agree on it."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def least_loaded(loads: Mapping[str, int], draining: Collection[str]) -> str | None:
    """The pod with the fewest pinned sessions among those not draining (ties: the smallest name).

    Draining pods are used only when every pod drains: refusing a user is worse than delaying a drain,
    and the autoscaler stops draining when demand needs the pods back. ``None`` when there is no pod.
    """
    serving = [pod for pod in loads if pod not in draining] or list(loads)
    if not serving:
        return None
    return min(serving, key=lambda pod: (loads[pod], pod))
