"""Run the real ``tritonserver`` that the ``nvidia-pytriton`` wheel ships, on the CPU.

The wheel keeps the server binary, the Python backend and one backend stub per Python version in
separate folders; Triton wants one backend directory whose ``python/`` holds the backend library and
the stub for our interpreter. We assemble that folder ourselves instead of going through PyTriton's
own launcher, because we serve a plain model repository rather than PyTriton-bound callables.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from services.triton.params import WEIGHTS_ENV


class StackError(RuntimeError):
    """The local stack could not start; the message says why and what to do."""


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def pytriton_dist() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise StackError("nvidia-pytriton is not installed: run `make install`") from exc
    dist = Path(pytriton.__file__).parent / "tritonserver"
    if not (dist / "bin" / "tritonserver").is_file():
        raise StackError(f"{dist}/bin/tritonserver is missing: reinstall nvidia-pytriton")
    return dist


def prepare_backend_dir(run_dir: Path) -> Path:
    """Lay out ``<run_dir>/backends/python`` with the backend library and our Python's stub."""
    dist = pytriton_dist()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise StackError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    target = run_dir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in (dist / "backends" / "python").iterdir():
        if source.is_file():
            _install(source, target / source.name)
    _install(stub, target / "triton_python_backend_stub")
    _check_stub_links(target / "triton_python_backend_stub")
    return run_dir / "backends"


def _install(source: Path, destination: Path) -> None:
    """Copy beside, then rename over: a binary still executing (a stray stub) cannot be opened for writing."""
    partial = destination.with_name(destination.name + ".partial")
    shutil.copy2(source, partial)
    os.replace(partial, destination)


def _check_stub_links(stub: Path) -> None:
    result = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, env=server_env(), check=False)
    missing = [line.strip() for line in result.stdout.splitlines() if "not found" in line]
    if missing:
        raise StackError(
            "the Triton Python stub cannot find its libraries: "
            + "; ".join(missing)
            + " (libpython3.11 comes from Debian's libpython3.11 package: `apt-get install -y libpython3.11`)"
        )


def server_env(weights_dir: Path | None = None) -> dict[str, str]:
    """Environment for the server: its bundled libraries, and our venv first on PATH.

    The backend stub embeds Debian's libpython, which locates its ``sys.prefix`` by finding
    ``python3`` on PATH; putting the venv's ``bin`` first makes the models see the venv's packages.
    """
    env = dict(os.environ)
    libs = pytriton_dist().parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libs)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    if weights_dir is not None:
        env[WEIGHTS_ENV] = str(weights_dir)
    return env


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def log_tail(path: Path, lines: int, missing: str = "") -> str:
    """The last ``lines`` lines of a background process's log, for the error that reports its failure."""
    if not path.exists():
        return missing
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TritonProcess:
    process: subprocess.Popen[bytes]
    ports: TritonPorts
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def tracing_args(otlp_http_url: str, *, export_delay_ms: int = 500) -> tuple[str, ...]:
    """tritonserver flags that export its own spans over OTLP/HTTP, joining the orchestrator's traces.

    The orchestrator sends a W3C ``traceparent`` with every request of a turn; in OpenTelemetry mode
    Triton continues that trace, so its queue and compute spans appear under the turn's stages.
    """
    return (
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={otlp_http_url}",
        f"--trace-config=opentelemetry,bsp_schedule_delay={export_delay_ms}",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    )


def start_triton(
    model_repository: Path,
    weights_dir: Path,
    run_dir: Path,
    ports: TritonPorts,
    *,
    extra_args: tuple[str, ...] = (),
) -> TritonProcess:
    """Start ``tritonserver`` in the background, logging to ``run_dir/triton.log``."""
    if not weights_dir.is_dir():
        raise StackError(f"weights folder {weights_dir} is missing: run `make weights` first")
    taken = [p for p in (ports.http, ports.grpc, ports.metrics) if port_in_use(p)]
    if taken:
        raise StackError(
            f"port(s) {', '.join(map(str, taken))} already in use: stop what holds them "
            "(`make down`, or `ss -ltnp`) or choose other ports"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    backends = prepare_backend_dir(run_dir)
    log_path = run_dir / "triton.log"
    command = [
        str(pytriton_dist() / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--allow-cpu-metrics=true",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=server_env(weights_dir), start_new_session=True
        )
    return TritonProcess(process=process, ports=ports, log_path=log_path)


def wait_until_ready(triton: TritonProcess, timeout: float = 240.0) -> None:
    """Block until every model is READY; on failure raise with the models' own error lines."""
    deadline = time.monotonic() + timeout
    url = f"{triton.http_url}/v2/health/ready"
    while time.monotonic() < deadline:
        if triton.process.poll() is not None:
            raise StackError(
                f"tritonserver exited with code {triton.process.returncode} while loading models:\n"
                + model_errors(triton.log_path)
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    triton.stop()
    raise StackError(f"tritonserver was not ready after {timeout:.0f} s:\n" + model_errors(triton.log_path))


def model_errors(log_path: Path) -> str:
    """The log lines that say which model failed and why (falls back to the log's tail)."""
    if not log_path.exists():
        return "(no server log)"
    lines = log_path.read_text(errors="replace").splitlines()
    keep = [
        line
        for line in lines
        if "failed to load" in line or "UNAVAILABLE" in line or ("Error" in line and "NVML" not in line)
    ]
    keep = [line for line in keep if "DCGM" not in line and "CudaDriver" not in line]
    unique = list(dict.fromkeys(keep))  # the server repeats each model failure in several places
    return "\n".join(unique[-40:] or lines[-40:])
