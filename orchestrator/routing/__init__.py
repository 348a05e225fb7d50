"""Routing of sessions to Triton pods (one pod per pool per session), shared with the autoscaler."""

from orchestrator.routing.choice import least_loaded
from orchestrator.routing.endpoints import EndpointSliceEndpoints, EndpointSource, PodEndpoint, StaticEndpoints
from orchestrator.routing.keys import DEFAULT_PREFIX, RoutingKeys
from orchestrator.routing.router import PodRouter

__all__ = [
    "DEFAULT_PREFIX",
    "EndpointSliceEndpoints",
    "EndpointSource",
    "PodEndpoint",
    "PodRouter",
    "RoutingKeys",
    "StaticEndpoints",
    "least_loaded",
]
