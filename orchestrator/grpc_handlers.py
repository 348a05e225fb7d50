"""Rebuilding a gRPC method handler around a wrapped behaviour, for the server's interceptors.

grpc.aio interceptors cannot wrap a call directly: they return a new ``RpcMethodHandler`` of the
same kind (unary/stream in and out) with the same codecs. Both of ours (error mapping, auth) need that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


Wrap = Callable[[Behavior, bool], Behavior]


def rebuild_handler(handler: grpc.RpcMethodHandler, wrap: Wrap) -> grpc.RpcMethodHandler:
    """The same handler kind and codecs around ``wrap(behavior, streams_responses)``."""
    codecs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **codecs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **codecs)
