"""The fault suite's own stack: a Triton, a Redis and orchestrator processes that the tests may break.

Nothing here touches the shared Redis on 6379 or the session Triton of tests/integration: every
process listens on free ports and lives in a temporary directory, so killing it harms no one else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
import tritonclient.grpc.aio as triton_aio

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, start_orchestrator, wait_until_serving
from orchestrator.devstack.triton_launcher import TritonPorts, TritonProcess, free_port, start_triton, wait_until_ready
from tests.conftest import REPO_ROOT

# Explicit model control: an operator (here the test) reloads a model whose backend stub died.
EXPLICIT_MODEL_CONTROL = ("--model-control-mode=explicit", "--load-model=*")
# The chart's Redis persistence: every write in the append-only file, fsync'd once a second.
CHART_AOF = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")


@dataclass
class RestartableTriton:
    """A tritonserver that can be crashed (SIGKILL to its process group, stubs included) and started again."""

    weights: Path
    run_dir: Path
    ports: TritonPorts = field(default_factory=lambda: TritonPorts(free_port(), free_port(), free_port()))
    server: TritonProcess | None = None
    starts: int = 0
    regions: set[str] = field(default_factory=set)  # the stubs' shared memory, freed once they are gone

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    def start(self) -> None:
        self.starts += 1
        run_dir = self.run_dir / f"start-{self.starts}"
        self.server = start_triton(
            REPO_ROOT / "model_repository", self.weights, run_dir, self.ports, extra_args=EXPLICIT_MODEL_CONTROL
        )
        wait_until_ready(self.server)
        self._remember_regions()

    def _remember_regions(self) -> None:
        for stub in self.stubs():
            with contextlib.suppress(psutil.Error):
                self.regions.update(part for part in stub.cmdline() if part.startswith("triton_python_backend_shm"))

    def _free_regions(self) -> None:
        """A killed stub (or server) leaves its /dev/shm region behind; a clean exit removes its own."""
        for region in self.regions:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/dev/shm/{region}")
        self.regions.clear()

    def crash(self) -> None:
        """SIGKILL the server and its Python stubs at once, then free the shared memory they leave behind."""
        assert self.server is not None
        self._remember_regions()
        stubs = self.stubs()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=30)
        psutil.wait_procs(stubs, timeout=10)
        self._free_regions()
        # The ports are free once the kernel has closed the sockets; wait for that before a restart.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_listening(p) for p in (self.ports.grpc, self.ports.http)):
            time.sleep(0.1)

    def restart(self) -> None:
        """Crash (if it still runs) and start again on the same ports: what a supervisor does."""
        self.crash()
        self.start()

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.process.pid, signal.SIGKILL)  # stubs left behind by hung requests
            psutil.wait_procs(self.stubs(), timeout=10)
            self._free_regions()

    async def reload(self, model: str) -> None:
        """The operator's fix for a dead stub: load the model again, with a config override.

        Triton 2.51 skips ``load`` for a model whose files and config did not change, so a plain load
        leaves the dead stub in place; a changed config (a reload marker parameter) forces a new instance.
        """
        client = triton_aio.InferenceServerClient(self.grpc_url)
        try:
            config = (await client.get_model_config(model, as_json=True))["config"]
            config.setdefault("parameters", {})["operator_reload"] = {"string_value": str(time.time())}
            await client.load_model(model, config=json.dumps(config))
        finally:
            await client.close()
        self._remember_regions()

    def stubs(self) -> list[psutil.Process]:
        """The live ``triton_python_backend_stub`` processes of this server (orphans of a crash included)."""
        backends = str(self.run_dir)
        alive = []
        for process in psutil.process_iter(["cmdline", "status"]):
            cmdline = process.info["cmdline"] or []
            if process.info["status"] == psutil.STATUS_ZOMBIE or not cmdline:
                continue
            if cmdline[0].endswith("triton_python_backend_stub") and cmdline[0].startswith(backends):
                alive.append(process)
        return alive

    def stub_of(self, model: str) -> psutil.Process | None:
        for stub in self.stubs():
            with contextlib.suppress(psutil.Error):
                if f"{model}_0_0" in stub.cmdline():
                    return stub
        return None

    def log_tail(self, lines: int = 60) -> str:
        return self.server.log_tail(lines) if self.server is not None else ""


def _listening(port: int) -> bool:
    return any(
        conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN
        for conn in psutil.net_connections("tcp")
    )


@dataclass
class RedisServer:
    """A redis-server with the chart's persistence: append-only file, fsync every second."""

    run_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.run_dir), *CHART_AOF],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.run_dir / 'redis.log'}")

    def crash(self) -> None:
        """SIGKILL: no shutdown save, so only what the AOF fsync already wrote survives."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def serve_flags() -> str:
    """``minmo serve --help``: the fault suite passes a short Triton deadline when the server has the flag."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "serve", "--help"], capture_output=True, text=True, check=False
    )
    return result.stdout


@dataclass
class Orchestrators:
    """``minmo serve`` processes on the fault stack; a killed one is replaced by a fresh one."""

    run_dir: Path
    triton_url: str
    redis_url: str
    extra_args: tuple[str, ...] = ()
    started: list[OrchestratorProcess] = field(default_factory=list)

    def start(self, *extra: str, redis_url: str | None = None) -> OrchestratorProcess:
        """A new process; ``extra`` flags and ``redis_url`` (e.g. through a proxy) for this one only."""
        process = start_orchestrator(
            self.run_dir / f"orchestrator-{len(self.started) + 1}",
            port=free_port(),
            triton_url=self.triton_url,
            redis_url=redis_url or self.redis_url,
            extra_args=(*self.extra_args, *extra),
        )
        self.started.append(process)
        wait_until_serving(process, timeout=120)
        return process

    @property
    def primary(self) -> OrchestratorProcess:
        """The first process: the one every test talks to unless it kills processes of its own."""
        return self.started[0]

    def stop_all(self) -> None:
        for process in self.started:
            if process.process.poll() is None:
                process.process.terminate()
                try:
                    process.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.process.kill()
