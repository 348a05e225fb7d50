"""The call surface sessions and tasks use (``ModelCalls``), and its routed form: each model to its pool's pod.

With routing on, a session's five models may live on different pods (one per pool); ``RoutedModels``
sends each call to the client of the pod its pool pinned. Clients are shared per address through one
``TritonClients`` registry that the process closes at shutdown: a gRPC channel per session would cost
a TCP (and TLS) handshake per session and leave channels behind on every crash path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from orchestrator.triton.client import ModelStream, Tensors, TritonModels


class ModelCalls(Protocol):
    """What the converse and task code calls on Triton: unary ``infer`` and per-model streams."""

    async def infer(
        self, model: str, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False
    ) -> dict[str, np.ndarray]: ...

    def open_stream(self, model: str) -> ModelStream: ...


class TritonClients:
    """One ``TritonModels`` client per pod address, created on first use, all closed by ``close``."""

    def __init__(self, factory: Callable[[str], TritonModels]) -> None:
        self._factory = factory  # address -> client (with the process's TLS and deadline settings)
        self._clients: dict[str, TritonModels] = {}

    def client(self, address: str) -> TritonModels:
        found = self._clients.get(address)
        if found is None:
            found = self._clients[address] = self._factory(address)
        return found

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


class RoutedModels:
    """``ModelCalls`` over several pods: ``routes`` maps each model to the address of the pod serving it."""

    def __init__(self, clients: TritonClients, routes: Mapping[str, str]) -> None:
        self._clients = clients
        self.routes = dict(routes)

    def _client(self, model: str) -> TritonModels:
        try:
            return self._clients.client(self.routes[model])
        except KeyError:
            raise KeyError(f"no pool serves model {model!r} (check --triton-pool)") from None

    async def infer(
        self, model: str, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False
    ) -> dict[str, np.ndarray]:
        return await self._client(model).infer(model, tensors, sequence_id=sequence_id, start=start, end=end)

    def open_stream(self, model: str) -> ModelStream:
        return self._client(model).open_stream(model)
