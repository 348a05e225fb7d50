"""Random Transcribe, Synthesize and session-id calls, and random auth metadata, against a real ``minmo serve``.

Each case is one call with a deadline (a hang fails it): it ends with a status the API documents for
what was sent (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or
OK), never INTERNAL or UNKNOWN, and the server stays SERVING.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, start_orchestrator, wait_until_serving
from orchestrator.devstack.redis_service import ensure_redis
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from tests.fuzz.counts import count

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CALL_TIMEOUT = 60.0
KEY = "fuzz-key-acme"
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
EXAMPLES = int(os.environ.get("MINMO_FUZZ_E2E_EXAMPLES", "40"))


@dataclass
class Server:
    process: OrchestratorProcess
    channel: grpc.Channel


@pytest.fixture(scope="module")
def server(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``minmo serve --auth api-keys`` on a Redis of its own, with a short first-event bound."""
    run_dir = tmp_path_factory.mktemp("fuzz-api")
    keys = run_dir / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key_sha256": hashlib.sha256(KEY.encode()).hexdigest(), "tenant": "acme"}]}))
    redis_port = free_port()
    redis_pid = ensure_redis("127.0.0.1", redis_port, run_dir / "redis")
    process = start_orchestrator(
        run_dir,
        port=free_port(),
        triton_url=triton.grpc_url,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        extra_args=("--auth=api-keys", f"--api-keys-file={keys}", "--first-event-seconds=2"),
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


GOOD = (("authorization", f"Bearer {KEY}"),)
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)  # what gRPC lets through in ASCII metadata
metadata = st.one_of(
    st.just(GOOD),
    st.lists(
        st.tuples(
            st.sampled_from(["authorization", "x-other"]),
            st.one_of(
                st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
                st.just(f"Bearer {KEY}"),
            ),
        ),
        max_size=3,
    ).map(tuple),
)
transcribe_configs = st.builds(
    lambda task, encoding, rate, language: pb.TranscribeRequest(
        config=pb.TranscribeConfig(
            task=task,
            target_language=language,
            audio_format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate),
        )
    ),
    st.integers(-2, 5),
    st.integers(-1, 3),
    st.one_of(st.just(16_000), st.integers(-5, 200_000)),
    st.one_of(st.just(""), st.sampled_from(["en", "zh", "German"]), st.text(max_size=40)),
)
transcribe_requests = st.lists(
    st.one_of(
        transcribe_configs,
        st.builds(lambda data: pb.TranscribeRequest(audio=pb.AudioChunk(data=data)), st.binary(max_size=4000)),
        st.just(pb.TranscribeRequest()),
    ),
    max_size=5,
)
synthesize_requests = st.builds(
    lambda text, instruction, prompt: pb.SynthesizeRequest(text=text, instruction=instruction, voice_prompt=prompt),
    st.one_of(st.just("Hello."), st.text(max_size=30), st.just("x" * 5000)),
    st.one_of(st.just(""), st.text(max_size=20), st.just("y" * 600)),
    st.one_of(st.just(b""), st.binary(max_size=64)),
)
session_ids = st.one_of(st.text(max_size=50), st.from_regex(r"[0-9a-f]{32}(:[a-z]+)?", fullmatch=True))


def _status(call: object) -> grpc.StatusCode:
    try:
        for _ in call:  # type: ignore[attr-defined]
            pass
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


def _serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="minmo.v1.MinMo"), timeout=10
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(auth=metadata, requests=transcribe_requests)
def test_random_transcribe_calls_end_with_a_documented_status(server: Server, auth, requests) -> None:  # type: ignore[no-untyped-def]
    count("e2e.transcribe")
    stub = minmo_pb2_grpc.MinMoStub(server.channel)
    status = _status(stub.Transcribe(iter(requests), metadata=auth, timeout=CALL_TIMEOUT))
    count(f"e2e.transcribe.{status.name}")
    assert status in DOCUMENTED, status
    if auth != GOOD:
        assert status == grpc.StatusCode.UNAUTHENTICATED or sum(k == "authorization" for k, _ in auth) == 1


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(auth=metadata, request=synthesize_requests)
def test_random_synthesize_calls_end_with_a_documented_status(server: Server, auth, request) -> None:  # type: ignore[no-untyped-def]
    count("e2e.synthesize")
    stub = minmo_pb2_grpc.MinMoStub(server.channel)
    status = _status(stub.Synthesize(request, metadata=auth, timeout=CALL_TIMEOUT))
    count(f"e2e.synthesize.{status.name}")
    assert status in DOCUMENTED, status


@settings(max_examples=EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(auth=metadata, session_id=session_ids, delete=st.booleans())
def test_random_session_ids_are_not_found_never_internal(server: Server, auth, session_id: str, delete: bool) -> None:  # type: ignore[no-untyped-def]
    count("e2e.session_ids")
    stub = minmo_pb2_grpc.MinMoStub(server.channel)
    try:
        if delete:
            stub.DeleteSession(pb.DeleteSessionRequest(session_id=session_id), metadata=auth, timeout=CALL_TIMEOUT)
        else:
            stub.GetSession(pb.GetSessionRequest(session_id=session_id), metadata=auth, timeout=CALL_TIMEOUT)
        status = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        status = exc.code()  # type: ignore[attr-defined]
    assert status in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED)


def test_the_server_is_still_serving(server: Server) -> None:
    assert _serving(server.channel)
