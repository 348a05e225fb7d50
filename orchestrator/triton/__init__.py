"""Async access to the five Triton models over gRPC (``tritonclient.grpc.aio``)."""
