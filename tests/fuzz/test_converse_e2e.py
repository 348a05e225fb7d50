"""Random Converse streams against the real ``minmo serve`` on the real Triton and a real Redis.

Each hypothesis example is one call: an opening (usually a valid config, sometimes garbage, a made-up
resume token or an oversized message), then a few events of any kind in any order, some replayed,
some raw bytes that do not parse, some over the 4 MiB limit. For every case: no hang (each call has a
deadline), the status the bytes call for (``wire.opening_code`` / ``wire.fatal_code``), only
recoverable error events while the session runs, and afterwards the session intact (it resumes with
its token, GetSession reads it) and the server SERVING.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, start_orchestrator, wait_until_serving
from orchestrator.devstack.redis_service import ensure_redis
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from tests.fuzz import wire
from tests.fuzz.counts import count, tallies
from tests.fuzz.strategies import E2E_TEXT, client_events, invalid_utf8_text, pcm16_bytes, raw_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASE_TIMEOUT = 60.0  # seconds per call: a hang fails the case with DEADLINE_EXCEEDED
# Asks for an error event no other event can produce, so its arrival proves every earlier event was served.
SENTINEL_MS = -424_242
SENTINEL = pb.ClientEvent(cancel=pb.CancelResponse(played_ms=SENTINEL_MS))
# What a running session may answer bad input with; UNAVAILABLE or INTERNAL would mean input broke a stage.
RECOVERABLE = {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}


@dataclass
class Server:
    process: OrchestratorProcess
    channel: grpc.Channel


@pytest.fixture(scope="module")
def server(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``minmo serve`` as its own process, on a Redis of its own (nothing the fuzzer writes can leak)."""
    run_dir = tmp_path_factory.mktemp("fuzz-e2e")
    redis_port = free_port()
    redis_pid = ensure_redis("127.0.0.1", redis_port, run_dir / "redis")
    process = start_orchestrator(
        run_dir, port=free_port(), triton_url=triton.grpc_url, redis_url=f"redis://127.0.0.1:{redis_port}/0"
    )
    try:
        wait_until_serving(process, timeout=120)
        channel = grpc.insecure_channel(process.address, options=[("grpc.max_send_message_length", -1)])
        yield Server(process, channel)
        channel.close()
    finally:
        if process.process.poll() is None:
            process.process.send_signal(signal.SIGTERM)
            process.process.wait(timeout=30)
        if redis_pid is not None:
            os.kill(redis_pid, signal.SIGTERM)


# ---- strategies ------------------------------------------------------------------------------------------------

VALID_OPENINGS = st.builds(
    lambda detection, encoding, rate, tokens: pb.ClientEvent(
        session=pb.SessionStart(
            config=pb.SessionConfig(
                turn_detection=detection,
                input_audio_format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate),
                max_response_tokens=tokens,
            )
        )
    ),
    st.sampled_from([pb.TURN_DETECTION_CLIENT, pb.TURN_DETECTION_MODEL]),
    st.sampled_from([pb.AudioFormat.PCM16, pb.AudioFormat.FLOAT32]),
    st.sampled_from([0, 8_000, 44_100, 48_000]),
    st.integers(1, 8),
)
# Audio a PCM16 16 kHz session accepts, from 1 sample to 1 s.
VALID_AUDIO = st.builds(
    lambda n, seed: pb.ClientEvent(
        audio=pb.AudioChunk(data=pcm16_bytes(np.random.default_rng(seed).normal(0, 0.1, n).astype(np.float32)))
    ),
    st.integers(1, 16_000),
    st.integers(0, 2**16),
)


# Weighted by hand (st.one_of flattens nested choices into equal branches): mostly events that parse,
# since bytes that do not parse or go over the limit end the call and with it the rest of the case.
def _item(roll: int) -> st.SearchStrategy[wire.Item]:
    if roll < 10:
        return client_events(E2E_TEXT)
    if roll < 13:
        return VALID_AUDIO
    if roll < 15:
        return raw_messages(E2E_TEXT)
    return st.just(wire.Oversize())


ITEMS = st.integers(0, 15).flatmap(_item)


@st.composite
def cases(draw: st.DrawFn) -> tuple[wire.Item, list[wire.Item]]:
    opening = draw(VALID_OPENINGS if draw(st.integers(0, 3)) else ITEMS)
    items = draw(st.lists(ITEMS, max_size=6))
    if items:  # replay some events: the same chunk, cancel or text twice, in another place
        for index, position in draw(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=2)):
            items.insert(position % (len(items) + 1), items[index % len(items)])
    return opening, items


# ---- the property ----------------------------------------------------------------------------------------------

CONFIG = pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=4)))
NAN_AUDIO = pb.ClientEvent(audio=pb.AudioChunk(data=np.array([0.0, np.nan], "<f4").tobytes()))
PCM16_8K_CONFIG = pb.ClientEvent(
    session=pb.SessionStart(config=pb.SessionConfig(input_audio_format=pb.AudioFormat(sample_rate_hz=8_000)))
)
FLOAT_CONFIG = pb.ClientEvent(
    session=pb.SessionStart(
        config=pb.SessionConfig(
            input_audio_format=pb.AudioFormat(encoding=pb.AudioFormat.FLOAT32, sample_rate_hz=8_000)
        )
    )
)


@settings(
    max_examples=int(os.environ.get("MINMO_FUZZ_E2E_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
@example(case=(b"\xff\xff\xff", []))  # garbage as the first message (was INTERNAL: DecodeError)
@example(case=(CONFIG, [invalid_utf8_text(b"hi")]))  # invalid UTF-8 mid-stream (was INTERNAL: ExceptionGroup)
@example(case=(wire.Oversize(), []))
@example(case=(CONFIG, [wire.Oversize()]))
@example(case=(pb.ClientEvent(session=pb.SessionStart(resume_token="x" * 300)), []))
@example(case=(FLOAT_CONFIG, [NAN_AUDIO, NAN_AUDIO, pb.ClientEvent(commit=pb.CommitTurn())]))
# One sample at 8 kHz: the resampler gives nothing yet (was UNAVAILABLE: "encoder: input AUDIO is empty").
@example(case=(PCM16_8K_CONFIG, [pb.ClientEvent(audio=pb.AudioChunk(data=b"\x00\x00"))]))
# 16 KiB of UTF-8 text overflows the smoke backbone's 4096 positions (was UNAVAILABLE and a context rebuild).
@example(case=(CONFIG, [pb.ClientEvent(text=pb.TextInput(text="\U0001f600" * 4096))]))
@example(case=(pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(instructions="\U0001f600" * 4096))), []))
# A cancel before the reply's prompt reached the backbone (was UNAVAILABLE: "cannot truncate a context").
@example(
    case=(
        CONFIG,
        [
            pb.ClientEvent(text=pb.TextInput(text="hello")),
            pb.ClientEvent(cancel=pb.CancelResponse(played_ms=500)),
            pb.ClientEvent(cancel=pb.CancelResponse(played_ms=100)),  # a regressed report, after the cancel
            pb.ClientEvent(cancel=pb.CancelResponse(played_ms=-5)),
            pb.ClientEvent(session=pb.SessionStart(resume_token="again")),
        ],
    )
)
def test_random_converse_streams_end_as_documented_and_leave_the_session_intact(
    server: Server, case: tuple[wire.Item, list[wire.Item]]
) -> None:
    opening, items = case
    count("e2e.converse")
    outcome = run_case(server, opening, items)
    count(f"e2e.converse.{outcome}")
    assert server.process.process.poll() is None, "minmo serve died:\n" + server.process.log_tail()
    assert serving(server.channel), "health is not SERVING after the case:\n" + server.process.log_tail()


def run_case(server: Server, opening: wire.Item, items: list[wire.Item]) -> str:
    """Play one case; returns how the call ended (a status name) for the tallies."""
    call = wire.RawConverse(server.channel, CASE_TIMEOUT)
    call.send(opening)
    refused = wire.opening_code(opening)
    if refused is not None:
        call.close_requests()
        code, details = call.finish()
        assert (code, bool(details)) == (refused, True), details
        assert not call.events, "a refused call must not start a session"
        return f"refused_{code.name}"

    started = call.read_until(lambda e: e.WhichOneof("event") == "session_started")
    assert started is not None, call.finish()
    session_id, token = started.session_started.session_id, started.session_started.resume_token
    expected = grpc.StatusCode.OK
    for item in items:
        call.send(item)
        event = wire.parsed(item)
        fatal = wire.fatal_code(item)
        if fatal is not None:
            expected = fatal
            break
        if event is not None and event.WhichOneof("event") == "end":
            break
    else:
        call.send(SENTINEL)
        reached = call.read_until(lambda e: e.WhichOneof("event") == "error" and str(SENTINEL_MS) in e.error.message)
        if reached is not None:
            call.send(pb.ClientEvent(end=pb.EndSession()))
    call.close_requests()
    code, details = call.finish()
    if code == grpc.StatusCode.INVALID_ARGUMENT and "do not fit the model's context" in details:
        # Instructions too long for the backbone: known only once Triton sees them, after SessionStarted.
        assert_gone(server.channel, session_id)
        return "INVALID_ARGUMENT_instructions"
    assert code == expected, f"ended {code.name} ({details}), expected {expected.name}"
    assert any(e.WhichOneof("event") == "error" and str(SENTINEL_MS) in e.error.message for e in call.events) or (
        expected != grpc.StatusCode.OK or items_end(items)
    ), "the call ended OK before serving every event"
    errors = [e.error for e in call.events if e.WhichOneof("event") == "error"]
    assert all(e.code in RECOVERABLE and e.message.strip() for e in errors), errors
    assert_intact(server.channel, session_id, token)
    return code.name


def assert_intact(channel: grpc.Channel, session_id: str, token: str) -> None:
    """The session resumes with its token, GetSession agrees on the history; then it is deleted."""
    resume = wire.RawConverse(channel, CASE_TIMEOUT)
    resume.send(pb.ClientEvent(session=pb.SessionStart(resume_token=token)))
    started = resume.read_until(lambda e: e.WhichOneof("event") == "session_started")
    assert started is not None, resume.finish()
    assert started.session_started.session_id == session_id and started.session_started.resumed
    resume.send(pb.ClientEvent(end=pb.EndSession()))
    resume.close_requests()
    assert resume.finish()[0] == grpc.StatusCode.OK
    stub = minmo_pb2_grpc.MinMoStub(channel)
    session = stub.GetSession(pb.GetSessionRequest(session_id=session_id), timeout=10)
    assert len(session.turns) == started.session_started.history_turns
    assert [t.sequence for t in session.turns] == list(range(1, len(session.turns) + 1))
    stub.DeleteSession(pb.DeleteSessionRequest(session_id=session_id), timeout=10)


def items_end(items: list[wire.Item]) -> bool:
    return any((event := wire.parsed(item)) is not None and event.WhichOneof("event") == "end" for item in items)


def assert_gone(channel: grpc.Channel, session_id: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        minmo_pb2_grpc.MinMoStub(channel).GetSession(pb.GetSessionRequest(session_id=session_id), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="minmo.v1.MinMo"), timeout=10
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_the_e2e_fuzzer_reaches_every_kind_of_ending(server: Server) -> None:
    """Guards the fuzzer itself: the tallies show refused openings, clean ends and mid-stream failures."""
    del server  # runs after the property in this module, on the same server
    ran = tallies()
    if ran.get("e2e.converse", 0) < 20:
        pytest.skip("the property ran too few cases to judge its coverage (MINMO_FUZZ_E2E_EXAMPLES < 20)")
    endings = {name for name in ran if name.startswith("e2e.converse.")}
    assert "e2e.converse.OK" in endings, endings
    assert any(name.startswith("e2e.converse.refused_") for name in endings), endings
    assert "e2e.converse.INVALID_ARGUMENT" in endings or "e2e.converse.RESOURCE_EXHAUSTED" in endings, endings


def test_a_replayed_resume_token_of_a_live_session_is_refused_and_the_live_call_goes_on(server: Server) -> None:
    """Two calls, one token: the second waits out the owner lease, then FAILED_PRECONDITION; the first goes on."""
    count("e2e.converse")
    live = wire.RawConverse(server.channel, CASE_TIMEOUT)
    live.send(CONFIG)
    started = live.read_until(lambda e: e.WhichOneof("event") == "session_started")
    assert started is not None, live.finish()
    replay = wire.RawConverse(server.channel, CASE_TIMEOUT)
    replay.send(pb.ClientEvent(session=pb.SessionStart(resume_token=started.session_started.resume_token)))
    opened = replay.read_until(lambda e: True)  # the call stays open: the server must refuse it on its own
    assert opened is None, f"a second live stream of one session was opened: {opened}"
    code, details = replay.finish()
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "live on another connection" in details, details
    live.send(SENTINEL)
    assert live.read_until(lambda e: e.WhichOneof("event") == "error" and str(SENTINEL_MS) in e.error.message)
    live.send(pb.ClientEvent(end=pb.EndSession()))
    assert live.finish()[0] == grpc.StatusCode.OK
    assert_intact(server.channel, started.session_started.session_id, started.session_started.resume_token)
