"""Faults during spoken turns: what is stored is the speech embeddings, and a resume must rebuild from them.

The orchestrator is killed while answering a spoken turn. The spoken user turns acknowledged before
(``speech_stopped``) are in Redis with their encoder embeddings, whole (rows x width float32), none twice;
the resumed session rebuilds its context from them and answers the next spoken turn.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable
from tests.integration.converse_client import speech

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPOKEN = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=200)


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    cache: Path = tmp_path_factory.mktemp("espeak")
    return speech("Please book a table for two at seven tonight.", cache)


async def spoken_turn(session: FaultSession, audio: np.ndarray) -> int:
    """Speak, commit: the user turn is acknowledged by ``speech_stopped``; returns the response id."""
    stopped, started = session.count("speech_stopped"), session.count("response_started")
    session.client.send_audio(audio)
    session.client.send(commit=pb.CommitTurn())
    await session.until(
        lambda: session.count("speech_stopped") > stopped and session.count("response_started") > started,
        60,
        "the spoken turn's acknowledgement",
    )
    session.ledger.acknowledged.append(("user", ""))
    return int(session.client.of("response_started")[-1].response_started.response_id)


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_spoken_turns_survive_a_kill_with_their_embeddings(
    attempt: int, voice: np.ndarray, orchestrators: Orchestrators, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    victim = orchestrators.start()
    session = FaultSession(victim.address)
    started = await session.open(pb.SessionStart(config=SPOKEN))
    first = await spoken_turn(session, voice)
    await session.first_audio(first)
    session.client.send(cancel=pb.CancelResponse(played_ms=600))
    await session.done(first)
    cut = await spoken_turn(session, voice)
    await session.first_audio(cut)
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    await session.abandon()

    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    after = await spoken_turn(resumed, voice)
    await resumed.first_audio(after)
    resumed.client.send(cancel=pb.CancelResponse(played_ms=600))
    done = await resumed.done(after)
    await resumed.close()

    history = await fault_store.history(started.session_id)
    lost, duplicated = session.ledger.audit(history)
    spoken = [t for t in history if t.role == "user"]
    whole = all(t.embedding_dim > 0 and t.speech_matrix().shape[0] > 0 for t in spoken)
    survived = again.resumed and done.status == pb.INTERRUPTED and resumed.client.error is None and whole
    fault_table.record(
        "orchestrator killed mid-turn (spoken turns, speech embeddings)",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note="acknowledged spoken turns keep their encoder embeddings; the resumed context is rebuilt from them",
    )
    assert again.history_turns == 3  # user (spoken), assistant, user (spoken; acknowledged by speech_stopped)
    assert survived and lost == 0 and duplicated == 0, (lost, [(t.role, t.text, t.embedding_dim) for t in history])
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))
    assert len(spoken) == 3 and len({t.speech_embeddings for t in spoken[:2]}) <= 2
    await fault_store.delete(started.session_id)
