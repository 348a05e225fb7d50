"""Speculative responses end to end: nothing reaches the client before the decision, nothing of a discarded
speculation is stored, and a session with speculation on stores and says exactly what it would with it off.

The orchestrator speculates after 200 ms of silence, so that a pause inside a turn starts a speculation the
user then talks over (discarded): the properties must hold however often it speculates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from prometheus_client import REGISTRY

from orchestrator.converse.speculation import SpeculationSettings
from orchestrator.devstack.triton_launcher import TritonProcess
from tests.integration.converse_client import ConverseClient, silence, speech
from tests.integration.helpers import open_streams
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EAGER = SpeculationSettings(silence_ms=200)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


def speculations(outcome: str) -> float:
    return REGISTRY.get_sample_value("minmo_speculation_total", {"outcome": outcome}) or 0.0


def turns(cache: Path) -> list[np.ndarray]:
    """Two user turns; the first has a 0.45 s pause inside it that a speculation starts in, then is dropped."""
    first = np.concatenate(
        [silence(0.3), speech("I was thinking", cache), silence(0.45), speech("about the weather in Paris.", cache)]
    )
    return [np.concatenate([first, silence(1.8)]), np.concatenate([speech("And tomorrow?", cache), silence(1.8)])]


async def conversation(orch: object, audio: list[np.ndarray], speculation: int) -> tuple[ConverseClient, str]:
    client = ConverseClient(orch.channel)  # type: ignore[attr-defined]
    config = pb.SessionConfig(max_response_tokens=12, speculation=speculation)  # type: ignore[arg-type]
    client.send(session=pb.SessionStart(config=config))
    session_id = (await client.wait_for("session_started")).session_started.session_id
    for number, samples in enumerate(audio, start=1):
        client.send_audio(samples)
        done = await client.wait_for("response_done", count=number)
        assert done.response_done.status == pb.COMPLETED
    client.send(end=pb.EndSession())
    await client.finished()
    assert client.error is None
    return client, session_id


def assert_nothing_before_its_decision(client: ConverseClient) -> None:
    """Every text or audio delta follows its response's `response_started`, which follows `speech_stopped`."""
    started: set[int] = set()
    stopped = 0
    for event in client.events:
        kind = event.WhichOneof("event")
        if kind == "speech_stopped":
            stopped += 1
        elif kind == "response_started":
            assert stopped == len(started) + 1, "a response started before its user turn was acknowledged"
            started.add(event.response_started.response_id)
        elif kind in ("text_delta", "audio_delta"):
            delta = getattr(event, kind)
            assert delta.response_id in started, f"{kind} of response {delta.response_id} before its start"


async def test_speculation_sends_nothing_early_and_stores_what_it_would_without(
    triton: TritonProcess, cache: Path
) -> None:
    audio = turns(cache)
    async with running_orchestrator(triton.grpc_url, converse_options={"speculation": EAGER}) as orch:
        baseline = open_streams(triton.ports.metrics, "backbone")
        before = {outcome: speculations(outcome) for outcome in ("started", "committed", "discarded")}
        on, on_id = await conversation(orch, audio, pb.SPECULATION_ON)
        after_on = {outcome: speculations(outcome) for outcome in before}
        off, off_id = await conversation(orch, audio, pb.SPECULATION_OFF)
        after_off = {outcome: speculations(outcome) for outcome in before}

        # With it on, the pause inside the first turn started a speculation the user talked over (discarded),
        # and each turn's end started one the decision committed; with it off, none.
        assert after_on["committed"] - before["committed"] == 2
        assert after_on["discarded"] - before["discarded"] >= 1
        assert after_on["started"] - before["started"] == (
            after_on["committed"] - before["committed"] + after_on["discarded"] - before["discarded"]
        )
        assert after_off == after_on

        for client in (on, off):
            assert_nothing_before_its_decision(client)
        kinds = [
            [e.WhichOneof("event") for e in c.events if e.WhichOneof("event") not in ("text_delta",)] for c in (on, off)
        ]
        assert [k for k in kinds[0] if k != "audio_delta"] == [k for k in kinds[1] if k != "audio_delta"]

        # The same answers, and the same history in Redis: user speech rows, assistant text and token ids.
        said = [[d.response_done.text for d in c.of("response_done")] for c in (on, off)]
        assert said[0] == said[1]
        stored_on, stored_off = await orch.store.history(on_id), await orch.store.history(off_id)
        assert [t.role for t in stored_on] == ["user", "assistant", "user", "assistant"]
        for a, b in zip(stored_on, stored_off, strict=True):
            assert (a.role, a.text, a.token_ids, a.interrupted) == (b.role, b.text, b.token_ids, b.interrupted)
            if a.role == "user":
                np.testing.assert_array_equal(a.speech_matrix(), b.speech_matrix())
        # No fork of a discarded or committed speculation is left open on Triton.
        assert open_streams(triton.ports.metrics, "backbone") == baseline


async def test_a_barge_in_and_a_resume_work_with_speculation_on(triton: TritonProcess, cache: Path) -> None:
    question = np.concatenate([silence(0.3), speech("Tell me a long story about a dragon.", cache), silence(1.8)])
    async with running_orchestrator(triton.grpc_url, converse_options={"speculation": EAGER}) as orch:
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=40)))
        started = (await client.wait_for("session_started")).session_started
        client.send_audio(question)
        await client.wait_for("audio_delta")
        # The user talks over the answer (paced, as a microphone would send it): the duplex model stops it.
        await client.send_audio_paced(np.concatenate([speech("Wait, stop please.", cache), silence(1.8)]), pace=4)
        first = await client.wait_for("response_done", within=90)
        assert first.response_done.status == pb.INTERRUPTED
        second = await client.wait_for("response_done", count=2, within=90)
        assert second.response_done.status == pb.COMPLETED
        client.send(end=pb.EndSession())
        await client.finished()
        assert_nothing_before_its_decision(client)
        history = await orch.store.history(started.session_id)
        assert [t.role for t in history] == ["user", "assistant", "user", "assistant"]
        assert history[1].interrupted and not history[3].interrupted

        resumed = ConverseClient(orch.channel)
        resumed.send(session=pb.SessionStart(resume_token=started.resume_token))
        assert (await resumed.wait_for("session_started")).session_started.session_id == started.session_id
        resumed.send_audio(np.concatenate([speech("Thank you.", cache), silence(1.8)]))
        assert (await resumed.wait_for("response_done")).response_done.status == pb.COMPLETED
        resumed.send(end=pb.EndSession())
        await resumed.finished()
        assert_nothing_before_its_decision(resumed)
        assert len(await orch.store.history(started.session_id)) == 6
