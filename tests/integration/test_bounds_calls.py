"""Issue 13 at the API, against the real Triton and Redis: every call is bounded, and says why when it ends.

Points 1 (Synthesize's audio reservation), 2 (first event, idle and duration limits), 5 (a client that
does not read; speech quotas), 6 (a resent turn stored once) and 7 (session ids, token rotation),
each through real gRPC over loopback with the in-process orchestrator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.limits.tenants import TenantLimitSettings
from orchestrator.state.records import StoredTurn
from orchestrator.tasks.synthesize import Synthesizer
from orchestrator.triton.client import TritonModels
from tests.integration.converse_client import ConverseClient
from tests.integration.orchestrator_fixture import Orchestrator, running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TYPED = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=8)


async def _open(orchestrator: Orchestrator, start: pb.SessionStart) -> tuple[ConverseClient, pb.SessionStarted]:
    client = ConverseClient(orchestrator.channel)
    client.send(session=start)
    started = (await client.wait_for("session_started", within=60)).session_started
    return client, started


async def _ended(client: ConverseClient, within: float) -> grpc.aio.AioRpcError:
    await client.finished(within)
    assert client.error is not None, "the call ended OK"
    return client.error


async def _silent() -> AsyncIterator[pb.ClientEvent]:
    await asyncio.sleep(3600)
    yield pb.ClientEvent()  # pragma: no cover - never reached


# --- 2. the first event, idle and too long calls ------------------------------------------------------------------


async def test_a_call_that_sends_nothing_holds_no_slot_and_ends_in_time(triton: TritonProcess) -> None:
    """One slot in the process: a silent call must not take it, and must end with a message after 1 s."""
    async with running_orchestrator(triton.grpc_url, shedding=True, max_sessions=1, first_event_seconds=1) as orch:
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        silent = stub.Converse(_silent())
        silent_transcribe = stub.Transcribe(_silent())  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        client, _ = await _open(orch, pb.SessionStart(config=TYPED))  # the one slot is free
        for call in (silent, silent_transcribe):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "send the" in (info.value.details() or "") and "first" in (info.value.details() or "")
        client.send(end=pb.EndSession())
        await client.close()


async def test_an_idle_session_ends_resumably_and_a_long_one_at_its_limit(triton: TritonProcess) -> None:
    options = {"idle_seconds": 1.0, "max_call_seconds": 60.0}
    async with running_orchestrator(triton.grpc_url, converse_options=options) as orch:
        client, started = await _open(orch, pb.SessionStart(config=TYPED))
        error = await _ended(client, within=10)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "resume" in (error.details() or "")
        await client.close()
        resumed, again = await _open(orch, pb.SessionStart(resume_token=started.resume_token))
        assert again.resumed and again.session_id == started.session_id
        resumed.send(end=pb.EndSession())
        await resumed.close()
    options = {"idle_seconds": 60.0, "max_call_seconds": 2.0}
    async with running_orchestrator(triton.grpc_url, converse_options=options) as orch:
        client, started = await _open(orch, pb.SessionStart(config=TYPED))
        ticking = time.monotonic()
        while client.error is None and time.monotonic() - ticking < 10:
            client.send(commit=pb.CommitTurn())  # busy, not idle: only the duration limit can end it
            await asyncio.sleep(0.3)
        error = await _ended(client, within=10)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "longest allowed duration" in (
            error.details() or ""
        )
        await client.close()


# --- 5. a client that never reads --------------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_cut_off_and_its_session_kept(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url, converse_options={"max_queued_events": 16}) as orch:
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        flood_done = asyncio.Event()

        async def flood() -> AsyncIterator[pb.ClientEvent]:
            yield pb.ClientEvent(session=pb.SessionStart(config=TYPED))
            for _ in range(5000):  # each empty event gets an `error` event nobody reads
                yield pb.ClientEvent()
            flood_done.set()
            await asyncio.sleep(3600)

        call = stub.Converse(flood())
        deadline = time.monotonic() + 40
        while (orch.service.active and time.monotonic() < deadline) or not flood_done.is_set():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert orch.service.active == 0, "a client that does not read still holds its session"
        events = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for event in call:
                events.append(event)
        assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED)
        assert len(events) < 2000, "the server queued without bound"
        started = events[0].session_started
        resumed, again = await _open(orch, pb.SessionStart(resume_token=started.resume_token))
        assert again.resumed
        resumed.send(end=pb.EndSession())
        await resumed.close()


# --- 7. ids and tokens --------------------------------------------------------------------------------------------


async def test_a_crafted_session_id_is_not_found_never_an_internal_that_leaks(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client, started = await _open(orch, pb.SessionStart(config=TYPED))
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        for crafted in (f"{started.session_id}:turns", f"{started.session_id}:lease", "x:y", "*"):
            for rpc, request in (
                (stub.GetSession, pb.GetSessionRequest(session_id=crafted)),
                (stub.DeleteSession, pb.DeleteSessionRequest(session_id=crafted)),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await rpc(request)  # type: ignore[operator]
                assert info.value.code() == grpc.StatusCode.NOT_FOUND, (crafted, info.value.details())
        client.send(end=pb.EndSession())
        await client.close()


async def test_a_resume_rotates_the_token(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url) as orch:
        client, first = await _open(orch, pb.SessionStart(config=TYPED))
        client.send(end=pb.EndSession())
        await client.close()
        client, second = await _open(orch, pb.SessionStart(resume_token=first.resume_token))
        assert second.resume_token != first.resume_token
        client.send(end=pb.EndSession())
        await client.close()
        client, third = await _open(orch, pb.SessionStart(resume_token=second.resume_token))
        client.send(end=pb.EndSession())
        await client.close()
        old = ConverseClient(orch.channel)
        old.send(session=pb.SessionStart(resume_token=first.resume_token))  # rotated out once `second` was used
        error = await _ended(old, within=20)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        await old.close()
        assert third.session_id == first.session_id


# --- 6. a resent turn is stored once --------------------------------------------------------------------------------


async def test_a_turn_resent_after_a_lost_acknowledgement_is_stored_once(triton: TritonProcess) -> None:
    """The process stored the user's text and died before ``response_started``: the resend answers it."""
    async with running_orchestrator(triton.grpc_url) as orch:
        client, started = await _open(orch, pb.SessionStart(config=TYPED))
        client.send(end=pb.EndSession())
        await client.close()
        # What the dead process left: the turn stored, no acknowledgement sent.
        await orch.store.append_turn(started.session_id, StoredTurn(1, "user", "book a table", (1,), 0))
        client, again = await _open(orch, pb.SessionStart(resume_token=started.resume_token))
        assert again.history_turns == 1
        client.send(text=pb.TextInput(text="book a table"))  # the README's rule: no response_started, resend
        await client.wait_for("response_started", within=30)
        await client.wait_for("response_done", within=60)
        client.send(text=pb.TextInput(text="and for four?"))
        await client.wait_for("response_done", count=2, within=60)
        client.send(end=pb.EndSession())
        await client.close()
        history = await orch.store.history(started.session_id)
        assert [(t.role, t.text) for t in history if t.role == "user"] == [
            ("user", "book a table"),
            ("user", "and for four?"),
        ]
        assert [t.role for t in history] == ["user", "assistant", "user", "assistant"]


# --- 1. Synthesize reserves its audio -------------------------------------------------------------------------------


async def test_concurrent_syntheses_cannot_pass_the_tenants_audio_minute_together(triton: TritonProcess) -> None:
    text = "Hello there, this is a test."
    bound = Synthesizer(TritonModels(triton.grpc_url)).max_audio_seconds(text, "")
    limits = TenantLimitSettings(audio_seconds_per_minute=1.5 * bound)  # one synthesis' bound fits, two do not
    async with running_orchestrator(triton.grpc_url, tenant_limits=limits) as orch:
        stub = minmo_pb2_grpc.MinMoStub(orch.channel)
        request = pb.SynthesizeRequest(text=text)
        produced: list[float] = []

        async def run() -> grpc.StatusCode:
            try:
                async for response in stub.Synthesize(request):
                    produced.append(len(response.audio) / 48_000)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(run(), run(), run())
        assert [code.name for code in codes].count("OK") == 1, codes
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        # The reservation was trued up: the minute holds what was produced, not the bound.
        keys = [key async for key in orch.store.redis.scan_iter(match=f"{orch.prefix}tenant:*:audio:*")]
        used_ms = sum([int(await orch.store.redis.get(key) or 0) for key in keys])
        assert abs(used_ms - sum(produced) * 1000) <= len(produced) + 2, (used_ms, sum(produced), bound)
        assert used_ms < bound * 1000 or sum(produced) >= bound - 0.05


# --- 5. stored speech has a quota -----------------------------------------------------------------------------------


async def test_a_spoken_turn_over_the_speech_quota_is_refused_and_the_session_goes_on(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url, store_options={"session_speech_bytes": 4096}) as orch:
        client, started = await _open(orch, pb.SessionStart(config=TYPED))
        rng = np.random.default_rng(0)
        client.send_audio((0.3 * rng.standard_normal(16_000 * 2)).astype(np.float32))
        await asyncio.sleep(1.0)
        client.send(commit=pb.CommitTurn())
        error = await client.wait_for("error", within=30)
        assert error.error.code == "RESOURCE_EXHAUSTED" and "quota" in error.error.message
        assert not client.of("speech_stopped") and not client.of("response_started")
        client.send(text=pb.TextInput(text="typed still works"))
        await client.wait_for("response_done", within=60)
        client.send(end=pb.EndSession())
        await client.close()
        history = await orch.store.history(started.session_id)
        assert [(t.role, t.text) for t in history[:1]] == [("user", "typed still works")]
