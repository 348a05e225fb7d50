"""Make sure a Redis answers at the configured address, starting one only if none does."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from orchestrator.devstack.triton_launcher import StackError


def redis_answers(host: str, port: int) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(host: str, port: int, run_dir: Path) -> int | None:
    """Return the pid of a Redis we started, or None when one was already running."""
    if redis_answers(host, port):
        return None
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            f"no Redis answers at {host}:{port} and redis-server is not installed: "
            "`apt-get install -y redis-server` (make install does this)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(run_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if redis_answers(host, port):
            return process.pid
        if process.poll() is not None:
            break
        time.sleep(0.2)
    tail = (run_dir / "redis.log").read_text(errors="replace")[-2000:]
    raise StackError(f"redis-server did not start on {host}:{port}:\n{tail}")
