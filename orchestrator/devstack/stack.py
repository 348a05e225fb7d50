"""``make up`` / ``make down``: the local stack in the background, and exactly that stack stopped.

The stack is Triton, Redis and the orchestrator (``minmo serve`` on 50051), which starts once Triton
is ready; ``up`` returns when the orchestrator's health says SERVING. What we started is written to
``.run/stack.json`` (pids and ports), so ``down`` stops those processes and nothing else: a Redis
that was already running stays running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from orchestrator.devstack.orchestrator_process import start_orchestrator, wait_until_serving
from orchestrator.devstack.redis_service import ensure_redis
from orchestrator.devstack.triton_launcher import (
    StackError,
    TritonPorts,
    port_in_use,
    start_triton,
    tracing_args,
    wait_until_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = REPO_ROOT / ".run"
STATE_FILE = RUN_DIR / "stack.json"


@dataclass
class StackState:
    triton_pid: int | None = None
    redis_pid: int | None = None
    orchestrator_pid: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    weights_dir: str = ""


def _read_state() -> StackState | None:
    if not STATE_FILE.exists():
        return None
    return StackState(**json.loads(STATE_FILE.read_text()))


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def up(
    weights_dir: Path,
    ports: TritonPorts,
    redis_host: str = "127.0.0.1",
    redis_port: int = 6379,
    orchestrator_port: int = 50051,
    triton_trace_url: str | None = None,
) -> StackState:
    state = _read_state()
    if state is not None and _alive(state.triton_pid):
        raise StackError(f"the stack is already up (triton pid {state.triton_pid}); `make down` first")
    if port_in_use(orchestrator_port):  # checked now rather than after minutes of model loading
        raise StackError(
            f"port {orchestrator_port} (orchestrator) already in use: stop what holds it (`make down`, or `ss -ltnp`)"
        )
    redis_pid = ensure_redis(redis_host, redis_port, RUN_DIR)
    extra = tracing_args(triton_trace_url) if triton_trace_url else ()
    triton = start_triton(REPO_ROOT / "model_repository", weights_dir, RUN_DIR, ports, extra_args=extra)
    state = StackState(
        triton_pid=triton.process.pid,
        redis_pid=redis_pid,
        ports={**asdict(ports), "redis": redis_port, "orchestrator": orchestrator_port},
        weights_dir=str(weights_dir),
    )
    STATE_FILE.write_text(json.dumps(asdict(state), indent=2))
    try:
        wait_until_ready(triton)
        orchestrator = start_orchestrator(
            RUN_DIR,
            port=orchestrator_port,
            triton_url=f"127.0.0.1:{ports.grpc}",
            redis_url=f"redis://{redis_host}:{redis_port}/0",
        )
        state.orchestrator_pid = orchestrator.process.pid
        STATE_FILE.write_text(json.dumps(asdict(state), indent=2))
        wait_until_serving(orchestrator)
    except StackError:
        down()
        raise
    return state


def down() -> list[str]:
    """Stop what ``up`` started; return a line per process stopped."""
    state = _read_state()
    if state is None:
        return []
    stopped = []
    # The orchestrator first: its calls in flight still need Triton and Redis during its grace period.
    processes = (
        ("orchestrator", state.orchestrator_pid),
        ("tritonserver", state.triton_pid),
        ("redis-server", state.redis_pid),
    )
    for name, pid in processes:
        if _alive(pid):
            assert pid is not None
            _terminate_group(pid)
            stopped.append(f"stopped {name} (pid {pid})")
    STATE_FILE.unlink(missing_ok=True)
    return stopped


def _terminate_group(pid: int, timeout: float = 30.0, stragglers_grace: float = 3.0) -> None:
    """Stop the process group: Triton's Python backend stubs are children that must go too.

    A stub can outlive its server (seen: a speech_lm stub still running 20 minutes after tritonserver
    exited on SIGTERM), holding its model's memory and the stub binary the next ``up`` copies. So once
    the leader is gone, whatever is left of the group gets a short grace, then SIGKILL.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    deadline = time.monotonic() + stragglers_grace
    while time.monotonic() < deadline and _group_members(pid):
        time.sleep(0.2)
    if _alive(pid) or _group_members(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members
