"""`minmo talk`'s scripted conversation: two answered turns and one barge-in, at real-time pace."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.talk import scripted_conversation, talk
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_scripted_conversation_answers_is_interrupted_and_answers_again(
    triton: TritonProcess, tmp_path: Path
) -> None:
    lines: list[str] = []
    async with running_orchestrator(triton.grpc_url) as orch:
        transcript = await talk(orch.address, scripted_conversation(tmp_path), tmp_path / "reply.wav", log=lines.append)
    statuses = [line.split()[5] for line in lines if "response_done" in line]
    # The first question is answered, the story is cut by the barge-in, the interruption is answered.
    assert statuses[0] == "COMPLETED" and statuses[1] == "INTERRUPTED" and statuses[-1] == "COMPLETED", lines
    assert any("end of speech -> first audio" in line for line in lines)
    # The trained smoke backbone answers the demo's questions in words (services/backbone/smoke/qa.py).
    texts = [line.split("text: ", 1)[1] for line in lines if line.startswith("    text: ")]
    assert texts[0] == repr("It is sunny and warm today."), lines
    assert repr("A little cat climbed the tallest tree in town.").startswith(texts[1][:-1]), lines
    assert texts[-1] == repr("Of course. Goodbye, and take care!"), lines
    audio, rate = sf.read(str(tmp_path / "reply.wav"))
    assert rate == 24_000 and len(audio) == transcript.reply_ms * 24 > 0
