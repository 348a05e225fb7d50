"""`minmo serve` with torch made unimportable serves a whole conversation against the real Triton and Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, wait_until_serving
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from tests.integration.converse_client import ConverseClient
from tests.unit.test_torch_free_orchestrator import BLOCK_TORCH, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_the_orchestrator_serves_without_torch(triton: TritonProcess, tmp_path: Path) -> None:
    port = free_port()
    argv = ["serve", f"--port={port}", f"--triton={triton.grpc_url}", "--redis=redis://127.0.0.1:6379/0"]
    script = BLOCK_TORCH + f"from orchestrator.cli import main; sys.exit(main({argv!r}))"
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await asyncio.to_thread(wait_until_serving, OrchestratorProcess(process, port, tmp_path / "serve.log"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = ConverseClient(channel)
            client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=8)))
            await client.wait_for("session_started")
            client.send(text=pb.TextInput(text="Hello there!"))
            done = await client.wait_for("response_done")
            assert done.response_done.status == pb.COMPLETED
            assert client.of("audio_delta"), "no audio came back"
            client.send(end=pb.EndSession())
            await client.finished()
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
        log.close()
    assert "torch is not installed" not in (tmp_path / "serve.log").read_text()
