"""Killing the orchestrator process mid-session loses no acknowledged turn, and duplicates none."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis.asyncio
from minmo.v1 import minmo_pb2 as pb

from orchestrator.devstack.orchestrator_process import start_orchestrator, wait_until_serving
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from orchestrator.state.store import SessionStore
from tests.integration.converse_client import ConverseClient, silence, speech

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_resume_on_another_process_after_a_kill(triton: TritonProcess, tmp_path: Path) -> None:
    first = start_orchestrator(
        tmp_path / "a", port=free_port(), triton_url=triton.grpc_url, redis_url="redis://127.0.0.1:6379/0"
    )
    second = None
    store = SessionStore(redis.asyncio.Redis(host="127.0.0.1", port=6379))
    try:
        wait_until_serving(first)
        channel = grpc.aio.insecure_channel(first.address)
        client = ConverseClient(channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=30)))
        started = (await client.wait_for("session_started")).session_started
        client.send_audio(np.concatenate([speech("Hello, who are you?", tmp_path), silence(1.6)]))
        await client.wait_for("response_done")
        client.send_audio(np.concatenate([speech("Tell me about the sea.", tmp_path), silence(1.6)]))
        await client.wait_for("response_started", count=2)
        await client.wait_for("audio_delta", count=len(client.of("audio_delta")) + 1)
        os.kill(first.process.pid, signal.SIGKILL)  # mid-response: nothing graceful happens
        first.process.wait(timeout=10)
        await client.close()
        await channel.close()
        acknowledged = len(client.of("speech_stopped")) + len(client.of("response_done"))

        second = start_orchestrator(
            tmp_path / "b", port=free_port(), triton_url=triton.grpc_url, redis_url="redis://127.0.0.1:6379/0"
        )
        wait_until_serving(second)
        channel = grpc.aio.insecure_channel(second.address)
        resumed = ConverseClient(channel)
        resumed.send(session=pb.SessionStart(resume_token=started.resume_token))
        again = (await resumed.wait_for("session_started", within=30)).session_started
        assert again.resumed and again.session_id == started.session_id
        assert again.history_turns == acknowledged == 3  # user, assistant, user: the cut response was never acked
        resumed.send(text=pb.TextInput(text="Are you still there?"))
        done = await resumed.wait_for("response_done")
        assert done.response_done.status == pb.COMPLETED
        resumed.send(end=pb.EndSession())
        await resumed.finished()
        await channel.close()
        history = await store.history(started.session_id)
        assert [t.sequence for t in history] == [1, 2, 3, 4, 5]
        assert [t.role for t in history] == ["user", "assistant", "user", "user", "assistant"]
        await store.delete(started.session_id)
    finally:
        for process in (first, second):
            if process is not None and process.process.poll() is None:
                process.process.terminate()
                process.process.wait(timeout=20)
        await store.redis.aclose()
