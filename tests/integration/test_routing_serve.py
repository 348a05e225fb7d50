"""``minmo serve --triton-pool ... --tokenizer ...`` as real processes on the session's Triton and the real Redis.

Two static "pods" are two addresses of the one Triton (``127.0.0.1:PORT`` and ``localhost:PORT``): the pin
in Redis names one of them, and what is checked is which name a session is pinned to, when, and when the
pin goes. The pool name is unique per run, so the pool's Redis keys are this test's alone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc
from tokenizers import AddedToken

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, start_orchestrator, wait_until_serving
from orchestrator.devstack.triton_launcher import TritonProcess, free_port
from orchestrator.routing.keys import RoutingKeys
from orchestrator.state.store import SessionStore
from services.backbone.tokenizer import AUDIO_BOS, AUDIO_EOS, SmokeByteTokenizer
from services.backbone.tokenizer_hf import HFTokenizer
from services.importers.synthetic.qwen2 import tiny_tokenizer
from tests.integration.converse_client import ConverseClient
from tests.integration.helpers import delete_matching

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/0"
ALL_MODELS = "encoder,backbone,duplex,speech_lm,vocoder"
KEYS = RoutingKeys()  # `minmo serve` writes under the default prefix


def tiny_tokenizer_dir(directory: Path) -> Path:
    """A byte-level BPE tokenizer.json with MinMo's specials whose 261 ids fit the smoke backbone's vocabulary.

    Its ids differ from the smoke tokenizer's UTF-8 bytes, so a stored turn shows which tokenizer made it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(vocab_size=256)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in (AUDIO_BOS, AUDIO_EOS)])
    tok.save(str(directory / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) <= SmokeByteTokenizer().vocab_size
    return directory


@pytest.fixture
def pool() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(pool: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await delete_matching(client, f"{KEYS.prefix}pool:{pool}:*")
    await client.aclose()


@pytest.fixture
def routed_pair(
    triton: TritonProcess, pool: str, tmp_path: Path
) -> Iterator[tuple[OrchestratorProcess, OrchestratorProcess, tuple[str, str], Path]]:
    """Two `minmo serve` replicas with the same pool of two static pods and the tiny real tokenizer."""
    port = triton.grpc_url.rpartition(":")[2]
    pods = (f"127.0.0.1:{port}", f"localhost:{port}")
    tokenizer = tiny_tokenizer_dir(tmp_path / "backbone")
    args = [f"--triton-pool={pool}={ALL_MODELS}@{'+'.join(pods)}", f"--tokenizer={tokenizer}"]
    started = [
        start_orchestrator(tmp_path / name, port=free_port(), triton_url=None, redis_url=REDIS_URL, extra_args=args)
        for name in ("a", "b")
    ]
    try:
        for process in started:
            wait_until_serving(process, timeout=120)
        yield started[0], started[1], pods, tokenizer
    finally:
        for process in started:
            if process.process.poll() is None:
                process.process.terminate()
                process.process.wait(timeout=20)


async def text_turn(client: ConverseClient, text: str, count: int) -> None:
    client.send(text=pb.TextInput(text=text))
    done = await client.wait_for("response_done", count=count)
    assert done.response_done.status == pb.COMPLETED


async def test_a_session_keeps_its_pod_across_replicas_and_frees_it_on_end_session(
    routed_pair: tuple[OrchestratorProcess, OrchestratorProcess, tuple[str, str], Path],
    pool: str,
    redis_client: redis.asyncio.Redis,
) -> None:
    first, second, (pod_a, pod_b), tokenizer_dir = routed_pair
    store = SessionStore(redis.asyncio.Redis.from_url(REDIS_URL))
    pins_of = KEYS.session_pins
    try:
        # Start on the first replica: both pods are empty, the tie goes to the smaller name.
        async with grpc.aio.insecure_channel(first.address) as channel:
            client = ConverseClient(channel)
            client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=8)))
            started = (await client.wait_for("session_started")).session_started
            sid = started.session_id
            await text_turn(client, "Hello there", 1)
            assert await redis_client.hgetall(pins_of(sid)) == {pool: pod_a}
            assert 0 < await redis_client.ttl(pins_of(sid)) <= store.ttl_seconds
            assert await redis_client.smembers(KEYS.pod_sessions(pool, pod_a)) == {sid}
            await client.close()  # the client goes away without EndSession: it may come back
        assert await redis_client.hgetall(pins_of(sid)) == {pool: pod_a}

        # The tokenizer from --tokenizer made the stored ids of the typed turn (not UTF-8 bytes).
        history = await store.history(sid)
        hf = HFTokenizer(tokenizer_dir / "tokenizer.json")
        assert history[0].role == "user" and history[0].text == "Hello there"
        assert list(history[0].token_ids) == hf.encode("Hello there") != list(b"Hello there")

        # Pod A now looks busier, so a fresh pick would choose B: the resumed session must stay on A.
        await redis_client.sadd(KEYS.pod_sessions(pool, pod_a), "busy-1", "busy-2")
        async with grpc.aio.insecure_channel(second.address) as channel:
            resumed = ConverseClient(channel)
            resumed.send(session=pb.SessionStart(resume_token=started.resume_token))
            again = (await resumed.wait_for("session_started", within=30)).session_started
            assert again.resumed and again.session_id == sid
            await text_turn(resumed, "Are you still there?", 1)
            assert await redis_client.hgetall(pins_of(sid)) == {pool: pod_a}
            assert sid not in await redis_client.smembers(KEYS.pod_sessions(pool, pod_b))
            resumed.send(end=pb.EndSession())
            await resumed.finished()
        assert await redis_client.exists(pins_of(sid)) == 0
        assert await redis_client.smembers(KEYS.pod_sessions(pool, pod_a)) == {"busy-1", "busy-2"}

        # A new session goes to the less loaded pod B; DeleteSession frees it even after a disconnect.
        async with grpc.aio.insecure_channel(second.address) as channel:
            other = ConverseClient(channel)
            other.send(session=pb.SessionStart(config=pb.SessionConfig()))
            other_id = (await other.wait_for("session_started")).session_started.session_id
            assert await redis_client.hgetall(pins_of(other_id)) == {pool: pod_b}
            await other.close()
            await minmo_pb2_grpc.MinMoStub(channel).DeleteSession(pb.DeleteSessionRequest(session_id=other_id))
        assert await redis_client.exists(pins_of(other_id)) == 0
        assert await redis_client.smembers(KEYS.pod_sessions(pool, pod_b)) == set()

        # A Synthesize call is served through the pool and leaves no pin behind.
        async with grpc.aio.insecure_channel(first.address) as channel:
            request = pb.SynthesizeRequest(text="Hi.", instruction="Speak calmly.")
            chunks = [r async for r in minmo_pb2_grpc.MinMoStub(channel).Synthesize(request, timeout=120)]
        assert chunks and all(c.audio for c in chunks)
        members = await redis_client.smembers(KEYS.pod_sessions(pool, pod_a))
        members |= await redis_client.smembers(KEYS.pod_sessions(pool, pod_b))
        assert members == {"busy-1", "busy-2"}
        await store.delete(sid)
    finally:
        await store.redis.aclose()
