"""The session's backbone context on Triton: one sequence that holds the conversation.

Everything that changes the context goes through here, in conversation order: the system prompt,
each user turn (spoken or typed), each assistant turn (cut to what was played). While the assistant
speaks, the speak path generates on this sequence, so the listen path appends the user's new audio
to a *fork* instead; on barge-in that audio is merged back here after the truncated assistant turn.
After a restart the same context is rebuilt from the Redis history with the same prompt functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from minmo_contracts import backbone
from minmo_contracts.prompt import ChatPrompt, Segment, SpeechSlot, SpeechTurn, TextTurn, Turn
from orchestrator.stages.ids import new_stream_id
from orchestrator.state.records import StoredTurn
from orchestrator.triton.client import ModelStream
from orchestrator.triton.routed import ModelCalls


class BackboneContext:
    def __init__(self, models: ModelCalls, prompt: ChatPrompt) -> None:
        self.prompt = prompt
        self.stream_id = new_stream_id()
        self.stream: ModelStream = models.open_stream(backbone.NAME)
        self.length = 0
        self._started = False

    async def append(
        self,
        *,
        ids: Sequence[int] = (),
        speech: np.ndarray | None = None,
        suffix: Sequence[int] = (),
        truncate_to: int = -1,
        sequence_id: int | None = None,
        fork_from: int = 0,
    ) -> np.ndarray:
        """Append (ids, speech, suffix) in one request.

        Returns the hidden states of the speech rows, or of every appended row when there is no speech.
        """
        target = self.stream_id if sequence_id is None else sequence_id
        start = fork_from != 0 or (target == self.stream_id and not self._started)
        tensors = backbone.append_request(ids, speech, suffix, truncate_to=truncate_to, fork_from=fork_from)
        outputs = [
            backbone.BackboneOutput.read(out)
            async for out in self.stream.request(tensors, sequence_id=target, start=start)
        ]
        if target == self.stream_id:
            self._started = True
            self.length = outputs[-1].context_length
        hidden = outputs[0].hidden
        if speech is None or not len(speech):
            return hidden
        return hidden[len(ids) : len(ids) + len(speech)]

    async def rebuild(self, segments: Sequence[Segment], speech: Mapping[str, np.ndarray]) -> None:
        """Feed a whole conversation (from the Redis history) into a fresh context."""
        for segment in segments:
            if isinstance(segment, SpeechSlot):
                await self.append(speech=speech[segment.key])
            else:
                await self.append(ids=segment)

    async def replay(self, history: Sequence[StoredTurn], *, instructions: str) -> None:
        """Feed the system prompt and the acknowledged history (from Redis) into this fresh context."""
        turns: list[Turn] = []
        speech = {}
        for turn in history:
            if turn.role == "user" and turn.embedding_dim:
                key = str(turn.sequence)
                speech[key] = turn.speech_matrix()
                turns.append(SpeechTurn(key))
            elif turn.role == "user":
                turns.append(TextTurn("user", turn.text))
            else:
                turns.append(TextTurn("assistant", turn.text, token_ids=turn.token_ids))
        await self.rebuild(self.prompt.conversation(turns, system_prompt=instructions), speech)

    async def fork(self, ids: Sequence[int], *, truncate_to: int = -1) -> int:
        """Start a new sequence as a copy of this context (cut to ``truncate_to``) plus ``ids``; return its id."""
        fork_id = new_stream_id()
        await self.append(ids=ids, sequence_id=fork_id, fork_from=self.stream_id, truncate_to=truncate_to)
        return fork_id

    def adopt(self, sequence_id: int, length: int) -> int:
        """Make the fork ``sequence_id`` (``length`` positions) the session's context; return the old one's id.

        A committed speculation generated on a fork that equals this context: the fork carries on as the
        context, and the old sequence (still open) is the caller's to reuse or close.
        """
        previous, self.stream_id, self.length = self.stream_id, sequence_id, length
        return previous

    async def end_assistant_turn(self, start_length: int, kept_ids: Sequence[int], *, interrupted: bool) -> None:
        """Close the assistant turn that began at ``start_length`` (after its opening), keeping ``kept_ids``.

        After a cancel, how far the speak path got is unknown (its prompt may not even be in yet), so
        an interrupted turn is cut back to before its opening and re-appended with what was played.
        """
        closing = self.prompt.assistant_close()
        if not interrupted:
            await self.append(ids=closing)
            return
        opening = self.prompt.assistant_open()
        await self.append(ids=[*opening, *kept_ids, *closing], truncate_to=start_length - len(opening))

    async def close_sequence(self, sequence_id: int) -> None:
        async for _ in self.stream.request(backbone.end_request(), sequence_id=sequence_id, end=True):
            pass

    async def close(self) -> None:
        if self._started and not self.stream.cancelled:
            await self.close_sequence(self.stream_id)
        await self.stream.close()


def token_count_for_played(played_ms: int, generated: int, *, ms_per_text_token: float = 120.0) -> int:
    """Text tokens whose speech was played: MinMo speaks 5 text tokens per 15 speech tokens (600 ms)."""
    return max(0, min(generated, int(np.ceil(played_ms / ms_per_text_token))))
