"""The orchestrator (``minmo serve``) as a background process of the local stack.

Ready means the standard gRPC health service answers SERVING for ``minmo.v1.MinMo``, which the
server only says once Triton's models are ready and Redis answers; a start that fails says why,
with the tail of ``.run/orchestrator.log``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.devstack.triton_launcher import StackError, log_tail, port_in_use
from orchestrator.server.contracts import SERVICE_NAME


@dataclass
class OrchestratorProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines, missing="(no orchestrator log)")


def start_orchestrator(
    run_dir: Path,
    *,
    port: int,
    triton_url: str | None,
    redis_url: str,
    max_sessions: int = 16,
    extra_args: Sequence[str] = (),
) -> OrchestratorProcess:
    """Start ``minmo serve`` in the background (its own process group), logging to ``run_dir/orchestrator.log``.

    ``triton_url`` None: no ``--triton`` (``extra_args`` then name the pools with ``--triton-pool``).
    """
    if port_in_use(port):
        raise StackError(
            f"port {port} (orchestrator) already in use: stop what holds it (`make down`, or `ss -ltnp`) "
            "or choose another port"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "orchestrator.log"
    command = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "serve",
        f"--port={port}",
        *([f"--triton={triton_url}"] if triton_url is not None else []),
        f"--redis={redis_url}",
        f"--max-sessions={max_sessions}",
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return OrchestratorProcess(process=process, port=port, log_path=log_path)


def health_status(address: str, timeout: float = 2.0) -> str:
    """Health's answer for ``minmo.v1.MinMo`` (``SERVING``, ``NOT_SERVING``, ...) or the call's error code."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def wait_until_serving(orchestrator: OrchestratorProcess, timeout: float = 60.0) -> None:
    """Block until health says SERVING; on failure raise with the reason and the log's tail."""
    deadline = time.monotonic() + timeout
    status = "no answer"
    while time.monotonic() < deadline:
        code = orchestrator.process.poll()
        if code is not None:
            raise StackError(
                f"the orchestrator exited with code {code} while starting; {orchestrator.log_path} ends with:\n"
                + orchestrator.log_tail()
            )
        status = health_status(orchestrator.address)
        if status == "SERVING":
            return
        time.sleep(0.5)
    raise StackError(
        f"the orchestrator on port {orchestrator.port} was not SERVING after {timeout:.0f} s (health: {status}; "
        f"the log's 'health: NOT_SERVING' lines say why); {orchestrator.log_path} ends with:\n"
        + orchestrator.log_tail()
    )
