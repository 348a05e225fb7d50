"""The wire format between the orchestrator and Triton: inputs, streaming requests, results, error classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from minmo_contracts import controls
from minmo_contracts.errors import CAPACITY_MARKER, INVALID_PREFIX
from orchestrator.triton.errors import TritonCapacityError, TritonStageError, TritonUnavailableError

Tensors = Mapping[str, np.ndarray]  # built by minmo_contracts, batch dimension added here
# Texts by which Triton (unary status, sequence batcher, dtype checks) and our adapters (streamed
# errors carry no status code) mark a request the caller must fix.
_INVALID_MARKERS = ("INVALID_ARG", INVALID_PREFIX, "must specify the START flag", "unexpected")
# Texts of failures that go away by themselves or by an operator's action (a restart, a model reload):
# the server or the path to it is down, a call ran past its deadline, or a model's backend stub died
# (Triton 2.51 keeps such a model READY but answers "Stub process '<model>_0_0' is not healthy").
_UNAVAILABLE_MARKERS = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "Deadline Exceeded",
    "failed to connect",
    "is not ready",
    "unknown model",
    "is not healthy",
)
# gRPC retries a lost connection with exponential backoff up to 120 s by default: after a Triton
# restart the orchestrator would fail fast for minutes. Capped, it reconnects within ~2 s.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def to_inputs(tensors: Tensors) -> list[triton_aio.InferInput]:
    """Wrap arrays as Triton inputs, adding the batch dimension of 1 every model config declares."""
    inputs = []
    for name, array in tensors.items():
        batched = np.ascontiguousarray(array)[None]
        item = triton_aio.InferInput(name, list(batched.shape), np_to_triton_dtype(batched.dtype))
        item.set_data_from_numpy(batched)
        inputs.append(item)
    return inputs


def stream_request(
    model: str, request_id: str, tensors: Tensors, *, sequence_id: int, start: bool, end: bool
) -> service_pb2.ModelInferRequest:
    """A streaming request that asks for the empty FINAL response.

    Without ``triton_enable_empty_final_response`` a decoupled model's closing flag never reaches
    the client, which then cannot tell a finished request from a slow one. tritonclient's own
    stream helper refuses that reserved parameter, so the protobuf is built here.
    """
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    for name, array in tensors.items():
        batched = np.ascontiguousarray(array)[None]
        tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(batched.dtype), shape=batched.shape)
        del tensor  # the shape and type are all a raw input needs
        request.raw_input_contents.append(batched.tobytes())
    request.parameters["sequence_id"].int64_param = sequence_id
    request.parameters["sequence_start"].bool_param = start
    request.parameters["sequence_end"].bool_param = end
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def from_result(result: Any) -> dict[str, np.ndarray]:
    response = result.get_response()
    return {output.name: result.as_numpy(output.name)[0] for output in response.outputs}


def classify(model: str, exc: Exception) -> TritonStageError:
    message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    status = exc.status() if isinstance(exc, InferenceServerException) else None
    text = f"{status or ''} {message}"
    if CAPACITY_MARKER in text:  # before UNAVAILABLE: the model answers with that code, but nothing is down
        return TritonCapacityError(model, message, status=str(status or ""))
    if any(marker in text for marker in _UNAVAILABLE_MARKERS):
        return TritonUnavailableError(model, message, status=str(status or ""))
    invalid = any(marker in text for marker in _INVALID_MARKERS)
    return TritonStageError(model, message, invalid=invalid, status=str(status or ""))


def stop_request(model: str, request_id: str, *, sequence_id: int) -> service_pb2.ModelInferRequest:
    """Ask a decoupled model to stop request ``request_id`` of ``sequence_id`` (see ``ModelStream.cancel``)."""
    return stream_request(model, request_id, controls.stop_request(), sequence_id=sequence_id, start=False, end=False)
