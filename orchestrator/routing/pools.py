"""``--triton-pool NAME=MODEL[,MODEL...]@TARGET``: which models each Triton pool serves and where its pods are.

TARGET is ``host:port[+host:port...]`` (a static list; each address is also the pod's name) or
``k8s:SERVICE`` (the ready pods behind that Service, read from its EndpointSlices). Parsing imports
nothing heavy, so the CLI (and the chart tests, which run the rendered args through it) stay fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MODELS = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")
K8S_PREFIX = "k8s:"
FORMAT = "NAME=MODEL[,MODEL...]@TARGET, TARGET = host:port[+host:port...] or k8s:SERVICE"
# A pool name is part of Redis keys and of the chart's object names: keep it to DNS-label characters.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$")


class PoolSpecError(ValueError):
    """A ``--triton-pool`` value or the set of them is wrong; the message says what to fix."""


@dataclass(frozen=True)
class PoolSpec:
    name: str
    models: tuple[str, ...]
    addresses: tuple[str, ...] = ()  # static pods (pod name = address)
    service: str | None = None  # or: the Kubernetes Service whose EndpointSlices list the pods


def parse_pool(text: str) -> PoolSpec:
    """One ``--triton-pool`` value; raises ``PoolSpecError`` naming the part that is wrong."""
    head, at, target = text.partition("@")
    name, eq, models_text = head.partition("=")
    if not at or not eq:
        raise PoolSpecError(f"--triton-pool {text!r}: expected {FORMAT}")
    name = name.strip()
    if not _NAME.match(name):
        raise PoolSpecError(f"--triton-pool {text!r}: pool name {name!r} must be lowercase letters, digits and '-'")
    models = tuple(m.strip() for m in models_text.split(","))
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise PoolSpecError(
            f"--triton-pool {text!r}: unknown model(s) {', '.join(map(repr, unknown))}; models are {', '.join(MODELS)}"
        )
    if len(set(models)) != len(models):
        raise PoolSpecError(f"--triton-pool {text!r}: a model is listed twice")
    target = target.strip()
    if target.startswith(K8S_PREFIX):
        service = target.removeprefix(K8S_PREFIX)
        if not _NAME.match(service):
            raise PoolSpecError(f"--triton-pool {text!r}: {service!r} is not a Service name")
        return PoolSpec(name, models, service=service)
    addresses = tuple(a.strip() for a in target.split("+"))
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad:
        raise PoolSpecError(f"--triton-pool {text!r}: {', '.join(map(repr, bad))} is not host:port (or k8s:SERVICE)")
    if len(set(addresses)) != len(addresses):
        raise PoolSpecError(f"--triton-pool {text!r}: an address is listed twice")
    return PoolSpec(name, models, addresses=addresses)


def check_pools(pools: Sequence[PoolSpec]) -> dict[str, str]:
    """The pool of every model; every model must be in exactly one pool and pool names must differ."""
    names = [pool.name for pool in pools]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PoolSpecError(f"--triton-pool: pool name(s) {', '.join(twice)} given more than once")
    pool_of: dict[str, str] = {}
    for pool in pools:
        for model in pool.models:
            if model in pool_of:
                raise PoolSpecError(
                    f"--triton-pool: model {model!r} is in pools {pool_of[model]!r} and {pool.name!r}; "
                    "each model must be served by exactly one pool"
                )
            pool_of[model] = pool.name
    missing = [m for m in MODELS if m not in pool_of]
    if missing:
        raise PoolSpecError(f"--triton-pool: no pool serves {', '.join(missing)}; add them to a pool")
    return pool_of
