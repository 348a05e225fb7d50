"""Is every model's Python stub alive? A liveness probe for the Triton container.

Triton 2.51 leaves a model READY after its Python backend stub process died: the request in flight
is never answered and every later one gets "Stub process '<model>_0_0' is not healthy" until the
model is reloaded. ``/v2/health/live`` and ``/v2/health/ready`` stay green, so neither kubelet nor the
orchestrator's health check notices. This probe sends each ready model the cheapest request its
stub must answer itself, and fails when one does not:

* a decoupled model with a ``STOP`` input gets a STOP on a fresh sequence (START and END): the
  adapter acknowledges it with an empty FINAL, without touching any stream state or the GPU;
* any other model gets its required inputs as empty tensors: the adapter rejects them with
  INVALID_ARG, which proves the stub answered.

Any answer from the stub counts as alive, an error from it included. Dead is "not healthy" or a
model that is not ready. No answer within the timeout is reported as slow but does not fail the
probe: a busy server queues the probe behind real work, and a liveness probe that fails under load
restarts healthy pods when they are needed most. Used by the chart as the Triton container's exec
liveness probe (kubelet restarts the container, which restarts the stubs):

    python3 -m services.triton.stub_probe --url 127.0.0.1:8001 --timeout 4
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from minmo_contracts.controls import STOP

_DEAD_MARKERS = ("is not healthy", "is not ready", "unknown model", "Stub process")


@dataclass(frozen=True)
class ProbeResult:
    model: str
    alive: bool
    detail: str


def _stub_answered(message: str) -> bool:
    return not any(marker in message for marker in _DEAD_MARKERS)


def _empty_inputs(config: dict[str, Any], grpcclient: Any) -> list[Any]:
    from tritonclient.utils import triton_to_np_dtype

    inputs = []
    for spec in config.get("input", []):
        if spec.get("optional"):
            continue
        dims = [1, *(0 for _ in spec.get("dims", []))]
        datatype = spec["data_type"].removeprefix("TYPE_")
        tensor = grpcclient.InferInput(spec["name"], dims, datatype)
        tensor.set_data_from_numpy(np.zeros(dims, triton_to_np_dtype(datatype)))
        inputs.append(tensor)
    return inputs


def _probe_unary(client: Any, grpcclient: Any, model: str, config: dict[str, Any], timeout: float) -> ProbeResult:
    from tritonclient.utils import InferenceServerException

    try:
        client.infer(
            model,
            _empty_inputs(config, grpcclient),
            sequence_id=secrets.randbits(63) or 1,
            sequence_start=True,
            sequence_end=True,
            client_timeout=timeout,
        )
    except InferenceServerException as exc:
        text = f"{exc.status()} {exc.message()}"
        if "DEADLINE" in text.upper():
            return ProbeResult(model, True, f"slow: no answer within {timeout:g} s")
        return ProbeResult(model, _stub_answered(text), text.strip())
    return ProbeResult(model, True, "answered")


def _probe_decoupled(url: str, grpcclient: Any, model: str, timeout: float) -> ProbeResult:
    """On its own client: a stream still waiting for its answer is left open (see ``main``)."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    stop = grpcclient.InferInput(STOP.name, [1, 1], "BOOL")
    stop.set_data_from_numpy(np.ones((1, 1), np.bool_))
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer(
        model,
        [stop],
        sequence_id=secrets.randbits(63) or 1,
        sequence_start=True,
        sequence_end=True,
        enable_empty_final_response=True,
    )
    try:
        _result, error = answers.get(timeout=timeout)
    except queue.Empty:
        return ProbeResult(model, True, f"slow: no answer within {timeout:g} s")
    client.stop_stream()
    client.close()
    if error is not None:
        return ProbeResult(model, _stub_answered(str(error)), str(error))
    return ProbeResult(model, True, "answered")


def probe(url: str, timeout: float) -> list[ProbeResult]:
    import tritonclient.grpc as grpcclient

    results = []
    with grpcclient.InferenceServerClient(url) as client:
        for entry in client.get_model_repository_index(as_json=True).get("models", []):
            model = entry["name"]
            if entry.get("state") != "READY":
                results.append(ProbeResult(model, False, f"state {entry.get('state', 'UNKNOWN')}"))
                continue
            config = client.get_model_config(model, as_json=True)["config"]
            decoupled = config.get("model_transaction_policy", {}).get("decoupled", False)
            has_stop = any(spec["name"] == STOP.name for spec in config.get("input", []))
            if decoupled and has_stop:
                results.append(_probe_decoupled(url, grpcclient, model, timeout))
            elif decoupled:
                results.append(ProbeResult(model, True, "skipped: decoupled without a STOP input"))
            else:
                results.append(_probe_unary(client, grpcclient, model, config, timeout))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds each model has to answer")
    args = parser.parse_args(argv)
    try:
        results = probe(args.url, args.timeout)
    except Exception as exc:  # the server itself does not answer: not alive either
        print(f"triton at {args.url}: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.model}: {'alive' if result.alive else 'DEAD'} ({result.detail})")
    return 0 if results and all(result.alive for result in results) else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # A slow model's stream is still open and closing it would wait for its answer: exit without waiting.
    os._exit(code)
