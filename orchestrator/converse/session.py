"""One live Converse session: the listen path never stops, responses run beside it.

Control flow: the reader task takes client events in order; audio goes through the listen path
(encoder -> backbone append -> duplex), whose decisions start a response (respond now) or interrupt
one (stop speaking). A response is a tracked task streaming the speak path's deltas to the client.
Every change of the backbone context happens under one lock, in conversation order, and every turn
is persisted to Redis before the client hears it acknowledged (``speech_stopped`` for a user turn,
``response_done`` for an assistant turn).

A Triton failure (a deadline, a dead backend stub, a restarted server) costs the turn in progress,
never the session: the client gets an ``error`` event (UNAVAILABLE) and, for a response, a
``response_done`` with status FAILED (nothing stored); the Triton-side state (backbone context,
encoder and duplex streams) is then rebuilt from the Redis history before the next event is served,
retried at most once per ``RETRY_SECONDS`` while Triton stays down (events in between are dropped).

Bounds: client events come through an ``Inbox`` (idle limit, and ``stop``: every ending on the
server's initiative), server events go through a bounded ``Outbox`` (a client that does not read is
cut off). A stopped session finishes like a disconnected one (the response in flight is cut to what
was played, stored and reported with ``response_done``), then the call ends with the stop's status.
Every append carries the owner lease's fencing token: a session whose lease a newer connection took
stores nothing more and ends with ABORTED.

Speculation (``orchestrator.converse.speculation``): with model turn detection, a spoken turn's *end
point* (the first frame after the user's last speech with a short silence, or a respond-now
probability over a lower threshold) is where the turn is closed, with speculation on or off; with
it on, a response starts there on a fork of the context and is held back until the decision commits
it (or the user going on discards it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
from minmo.v1 import minmo_pb2 as pb
from opentelemetry import trace

from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import SmokeByteTokenizer, Tokenizer
from minmo_contracts.turn_taking import Decision, DecisionPolicy
from minmo_contracts.vad import EnergyVad
from orchestrator.audio import AudioFormatError, InputAudioDecoder
from orchestrator.converse import commands, events, playback
from orchestrator.converse.context import BackboneContext, token_count_for_played
from orchestrator.converse.inbox import Inbox
from orchestrator.converse.outbox import CLOSE, Outbox
from orchestrator.converse.settings import SessionSettings
from orchestrator.converse.speculation import EndPoint, HeldResponse, SpeculationSettings
from orchestrator.converse.turns import Response, Turn, end_turn_trace, latencies, start_turn_trace
from orchestrator.errors import InvalidArgument, MinmoError, ResourceExhausted
from orchestrator.observability import metrics
from orchestrator.observability.tracing import stage_span
from orchestrator.stages.listen import ListenPath
from orchestrator.stages.speak import AudioDelta, SpeakConfig, SpeakPath, TextDelta
from orchestrator.state.errors import LeaseLost
from orchestrator.state.records import StoredTurn
from orchestrator.state.store import SessionStore, SpeechQuotaExceeded
from orchestrator.triton.errors import TritonCapacityError, TritonStageError
from orchestrator.triton.routed import ModelCalls

IDLE_TURN_FRAMES = 50  # 6 s of listening without speech
RETRY_SECONDS = 1.0  # between two rebuilds of the Triton-side state while Triton stays unavailable
DEFAULT_IDLE_SECONDS = 300.0
DEFAULT_MAX_QUEUED_EVENTS = 256
# A client cut off for not reading gets this long to take the events before its status; a call still blocked
# on writing to it then is cancelled (its slot and lease must not wait for a client that never reads).
CUTOFF_GRACE_SECONDS = 5.0


class ClientNotReading(ResourceExhausted):
    def __init__(self, queued: int) -> None:
        super().__init__(
            f"the client left {queued} server events unread: the call is cut off so they do not pile up on the "
            "server; read the stream as events arrive, then resume the session with its resume token"
        )


class ConverseSession:
    def __init__(
        self,
        models: ModelCalls,
        store: SessionStore,
        *,
        session_id: str,
        settings: SessionSettings,
        next_sequence: int,
        playback_lead_ms: int = 1000,
        tokenizer: Tokenizer | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        fence: int | None = None,
        unanswered: StoredTurn | None = None,
        speculation: SpeculationSettings | None = None,
        policy: DecisionPolicy | None = None,
    ) -> None:
        """``fence``: the owner lease's fencing token, sent with every append. ``unanswered``: the history's last
        turn when it is a typed user turn no response followed (stored, then the process died before
        ``response_started``); it is in Redis but not yet in the context (see ``_pending_typed``)."""
        self.models = models
        self.store = store
        self.session_id = session_id
        self.settings = settings
        self.tokenizer = tokenizer or SmokeByteTokenizer()
        self.context = BackboneContext(models, ChatPrompt(self.tokenizer))
        self.listen = ListenPath(models, self._append_user_speech)
        self.decoder = InputAudioDecoder(settings.encoding, settings.sample_rate_hz)
        self.vad = EnergyVad()
        self.policy = policy or DecisionPolicy()
        self.gate = self.policy.new_gate()
        self.next_sequence = next_sequence
        self.playback_lead_ms = playback_lead_ms
        # Counts received audio seconds against the tenant's limit (the handler sets it when limits are on).
        self.charge_audio: Callable[[float], Awaitable[None]] | None = None
        self.turn: Turn | None = None
        self.response: Response | None = None
        self._lock = asyncio.Lock()  # every change of the backbone context, in conversation order
        self._out: Outbox[pb.ServerEvent] = Outbox(max_queued_events, self._on_overflow)
        self.idle_seconds = idle_seconds
        self.fence = fence
        self._inbox: Inbox[pb.ClientEvent] | None = None
        self._early_stop: MinmoError | None = None  # a stop before the inbox exists
        self._call_task: asyncio.Task[object] | None = None
        # A stored typed user turn without its response: a client following the resend rule sends the same
        # text again, which then answers that turn instead of storing it twice.
        self._pending_typed = unanswered if unanswered is not None and unanswered.role == "user" else None
        if self._pending_typed is not None and (self._pending_typed.embedding_dim or not self._pending_typed.text):
            self._pending_typed = None
        self._group: asyncio.TaskGroup | None = None
        self._last_voiced_at: float | None = None
        self._lost: str | None = None  # why the Triton-side state is gone; None while it is intact
        self._next_rebuild = 0.0  # loop time of the next rebuild attempt
        self.ended_by_client = False  # the client sent EndSession (not a disconnect): its pods can go
        self.speculation = speculation or SpeculationSettings()
        if settings.speculation is not None:
            self.speculation = dataclasses.replace(self.speculation, enabled=settings.speculation)
        self.end_point = EndPoint(self.speculation)
        self.held: HeldResponse | None = None  # a speculative response waiting for the decision

    # The event stream ------------------------------------------------------------------------------

    async def run(self, client_events: AsyncIterator[pb.ClientEvent]) -> AsyncIterator[pb.ServerEvent]:
        """Serve the client's events; yield server events until the client ends or leaves, or the session stops.

        A stopped session's call ends with the stop's reason (raised after the events before it).
        """
        self._call_task = asyncio.current_task()  # the gRPC call's own task: what a cut-off cancels
        self._inbox = Inbox(client_events, idle_seconds=self.idle_seconds, busy=lambda: self.response is not None)
        if self._early_stop is not None:
            self._inbox.stop(self._early_stop)
        supervisor = asyncio.create_task(self._serve(self._inbox))
        try:
            while (event := await self._out.get()) is not CLOSE:
                assert isinstance(event, pb.ServerEvent)
                yield event
            await supervisor  # re-raise what ended the session (e.g. Triton unavailable)
            if self._inbox.stop_reason is not None:
                raise self._inbox.stop_reason
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor

    def stop(self, reason: MinmoError) -> None:
        """End the session between two events; the call then ends with ``reason`` (first one given wins)."""
        if self._inbox is None:
            self._early_stop = self._early_stop or reason
        else:
            self._inbox.stop(reason)

    @property
    def stop_reason(self) -> MinmoError | None:
        return self._inbox.stop_reason if self._inbox is not None else self._early_stop

    def emit(self, event: pb.ServerEvent) -> None:
        if event.WhichOneof("event") == "error":
            metrics.ERRORS.labels(code=event.error.code).inc()
        self._out.put(event)

    def _on_overflow(self) -> None:
        self.stop(ClientNotReading(self._out.max_events))
        task = self._call_task
        if task is not None:
            # The call's writes wait for the client's flow control: only cancelling it ends a call nobody reads.
            asyncio.get_running_loop().call_later(CUTOFF_GRACE_SECONDS, task.cancel)

    async def _serve(self, inbox: Inbox[pb.ClientEvent]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                async for event in inbox.events():
                    if not await self._handle_surviving_triton(event):
                        break
                if self.response is not None:
                    # The client is gone or the session stopped: store what was played, say so if it still listens.
                    with contextlib.suppress(TritonStageError, LeaseLost):
                        await self._interrupt(played_ms=0)
        except* LeaseLost as lost:
            self.stop(lost.exceptions[0])  # type: ignore[arg-type]  # the group holds LeaseLost only
        finally:
            await self._shutdown()
            self._out.close()

    async def _handle_surviving_triton(self, event: pb.ClientEvent) -> bool:
        """Serve one event; a Triton failure costs the event and the turn in progress, not the session."""
        if self._lost is not None and event.WhichOneof("event") != "end" and not await self._rebuild():
            if event.WhichOneof("event") != "audio":
                self.emit(events.error("UNAVAILABLE", f"the model server is unavailable ({self._lost}); retry shortly"))
            return True
        try:
            return await self._handle(event)
        except TritonStageError as exc:
            self._lose(exc)
            return True

    def _lose(self, exc: TritonStageError) -> None:
        """Report the failure once, fail the response in flight, and mark the Triton-side state for a rebuild."""
        if self._lost is None:
            # A model at capacity refused a new stream: nothing broke, but the turn is lost all the same.
            code = "RESOURCE_EXHAUSTED" if isinstance(exc, TritonCapacityError) else "UNAVAILABLE"
            self.emit(
                events.error(
                    code,
                    f"the model server failed ({exc}); the turn in progress is lost, "
                    "the session goes on from its stored history",
                )
            )
        self._lost = str(exc)
        self._next_rebuild = 0.0
        self.turn = None
        self.end_point.reset()
        held, self.held = self.held, None
        if held is not None:
            held.speak.cancel()  # its fork is gone with the Triton-side state; nothing to end
        response = self.response
        if response is not None and not response.finished:
            response.abandon()
            self.emit(events.response_failed(response.id, played_ms=response.sent_ms))
        self.response = None

    async def _rebuild(self) -> bool:
        """Fresh Triton streams fed with the stored history; False (and an error event) while Triton is down."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_rebuild:
            return False
        async with self._lock:
            stale = (self.context, self.listen)
            self.context = BackboneContext(self.models, stale[0].prompt)
            self.listen = ListenPath(self.models, self._append_user_speech)
            try:
                history = await self.store.history(self.session_id)
                await self.replay(history)
            except TritonStageError as exc:
                self.context.stream.cancel()
                self._lost, self._next_rebuild = str(exc), loop.time() + RETRY_SECONDS
                self.emit(events.error("UNAVAILABLE", f"the model server is still unavailable ({exc}); retrying"))
                return False
            self._lost, self.turn, self.next_sequence = None, None, len(history) + 1
            self.gate = self.policy.new_gate()
        stale[0].stream.cancel()  # the old sequences expire on Triton by their idle timeout
        return True

    async def _handle(self, event: pb.ClientEvent) -> bool:
        try:
            command = commands.command(event)
        except InvalidArgument as exc:  # a malformed event is reported and skipped; the session goes on
            self.emit(events.error(exc.code_name, exc.message))
            return True
        if self._pending_typed is not None and not isinstance(command, commands.SendText | commands.End):
            async with self._lock:
                await self._flush_pending_typed()
        if isinstance(command, commands.AppendAudio):
            await self._on_audio(command.data)
        elif isinstance(command, commands.SendText):
            await self._on_text(command.text)
        elif isinstance(command, commands.Commit):
            await self._on_commit()
        elif isinstance(command, commands.Cancel):
            if self.response is None:
                self.emit(events.error("FAILED_PRECONDITION", "cancel: no response is in progress"))
            else:
                await self._interrupt(played_ms=command.played_ms)
        else:
            self.ended_by_client = True
            return False  # End
        return True

    # Listening -------------------------------------------------------------------------------------

    async def _on_audio(self, data: bytes) -> None:
        try:
            pcm = self.decoder.decode(data)
        except AudioFormatError as exc:  # a bad chunk is reported and skipped; the session goes on
            self.emit(events.error("INVALID_ARGUMENT", str(exc)))
            return
        if not pcm.size:
            return  # a chunk shorter than the resampler's delay: its samples come out with the next one
        if self.charge_audio is not None:
            try:
                await self.charge_audio(len(pcm) / 16_000)
            except ResourceExhausted as exc:  # over the tenant's audio rate: the chunk is dropped, the session goes on
                self.emit(events.error(exc.code_name, exc.message))
                return
        heard_speech = self.vad.speaking
        last_voiced_before = self.vad.last_voiced_ms
        for vad_event in self.vad.push(pcm):
            if vad_event.started:
                heard_speech = True
                self.emit(events.speech_started(vad_event.at_ms))
        if self.vad.speaking:
            self._last_voiced_at = time.perf_counter()
        voiced = self.vad.last_voiced_ms != last_voiced_before  # a voiced frame in this chunk
        silence_ms = self.vad.silence_ms
        if voiced:
            # The user goes on: the turn has no end point yet, and a response started on one must go.
            self.end_point.clear()
            await self._discard_held()
        elif self.held is not None and self.held.age_seconds > self.speculation.max_hold_seconds:
            await self._discard_held()  # the decision never came: stop spending on it (the end point stays)
        async with self._lock:
            speaking = self.response is not None and self.response.first_audio_at is not None
            if self.response is None and self.turn is None:
                self.turn = Turn()
            step = await self.listen.push(pcm, speaking=speaking)
            rows_before = self.turn.frames if self.turn is not None else 0
            if self.turn is not None and self.response is None:
                self.turn.add(step.embeddings, step.stage_ms)
                self.turn.voiced = self.turn.voiced or heard_speech
                self.turn.audio_ms += len(pcm) * 1000 // 16_000
                if not self.turn.voiced and self.turn.frames > IDLE_TURN_FRAMES:
                    # Nobody is talking: forget the silence instead of growing the context with it, so
                    # an idle session never fills the backbone's positions.
                    await self.context.append(truncate_to=self.turn.start_length)
                    self.turn = None
                    self.end_point.reset()
        for frame, probs in enumerate(step.probs):
            decision = self.gate.step(probs, speaking, silence_ms)
            if self.settings.turn_detection != "model":
                continue
            if self.response is None and self.turn is not None and self.turn.voiced:
                respond = float(probs[Decision.RESPOND_NOW])
                await self._track_end_point(respond, rows_before + frame + 1, voiced=voiced, silence_ms=silence_ms)
            if decision == Decision.RESPOND_NOW and self.turn is not None and self.turn.voiced:
                await self._respond(end_rows=self.end_point.rows)
            elif decision == Decision.STOP_SPEAKING and self.response is not None:
                await self._interrupt(played_ms=0)

    async def _track_end_point(self, respond: float, rows: int, *, voiced: bool, silence_ms: int) -> None:
        """Move the turn's end point with this frame; start or drop a speculative response with it."""
        changed = self.end_point.frame(respond, rows, voiced=voiced, silence_ms=silence_ms)
        if changed is False:
            await self._discard_held()
        elif changed is True and self.speculation.enabled and self.held is None:
            await self._speculate()

    async def _speculate(self) -> None:
        """Start the response the decision would start at the end point, on a fork, held from the client."""
        assert self._group is not None and self.turn is not None and self.end_point.rows is not None
        async with self._lock:
            turn, rows = self.turn, self.end_point.rows
            prompt = self.context.prompt
            close = prompt.user_speech_close()
            cut = turn.start_length + len(prompt.user_speech_open()) + rows
            fork_id = await self.context.fork(close, truncate_to=cut)
            query = np.concatenate(turn.embeddings)[:rows].mean(axis=0)
            response_id = self.next_sequence + 1  # the user turn is stored first, under next_sequence
            held = HeldResponse(
                speak=self._speak_path(fork_id, query, seed=response_id),
                fork_id=fork_id,
                end_rows=rows,
                base_length=cut + len(close),
                response_id=response_id,
                query=query,
            )
            held.start(self._group)
            self.held = held

    async def _discard_held(self) -> None:
        """Drop the speculative response: STOP its streams, end its fork; nothing was sent or stored."""
        held, self.held = self.held, None
        if held is None:
            return
        with trace.get_tracer("minmo.orchestrator").start_as_current_span(
            "speculation.discarded",
            attributes={
                "minmo.session.id": self.session_id,
                "minmo.speculation.age_ms": round(held.age_seconds * 1000),
                "minmo.speculation.held_audio_ms": held.held_audio_ms,
            },
        ):
            await held.discard()
            with contextlib.suppress(TritonStageError):
                await held.speak.end_backbone_sequence()

    async def _append_user_speech(self, embeddings: np.ndarray) -> np.ndarray:
        """Where the listen path appends: the session context, or the fork while a response plays."""
        if self.response is not None:
            self.response.listened.append(embeddings)
            return await self.context.append(speech=embeddings, sequence_id=self.response.fork_id)
        opening: list[int] = []
        if self.turn is not None and not self.turn.embeddings:
            opening = self.context.prompt.user_speech_open()
            self.turn.start_length = self.context.length
        return await self.context.append(ids=opening, speech=embeddings)

    async def _on_commit(self) -> None:
        if self.response is not None:
            self.emit(events.error("FAILED_PRECONDITION", "commit: a response is in progress; cancel it first"))
        elif self.turn is None or not self.turn.embeddings:
            self.emit(events.error("FAILED_PRECONDITION", "commit: no user audio since the last response"))
        else:
            await self._respond()

    async def _on_text(self, text: str) -> None:
        if self.response is not None:
            self.emit(events.error("FAILED_PRECONDITION", "text: a response is in progress; cancel it first"))
            return
        await self._discard_held()  # a typed turn ends the spoken one without its end point
        async with self._lock:
            if self.turn is not None and self.turn.embeddings:
                await self._close_spoken_turn()
            self.turn = None
            resent = self._pending_typed is not None and self._pending_typed.text == text
            if not resent:
                await self._flush_pending_typed()
            turn_ids = self.context.prompt.user_text(text)[0]
            assert isinstance(turn_ids, list)
            try:
                hidden = await self.context.append(ids=turn_ids)
            except TritonStageError as exc:
                if not exc.invalid or "max_position_embeddings" not in exc.message:
                    raise  # e.g. "unknown stream" after a Triton restart: the session rebuilds, not the client's fault
                # The backbone refuses a text that overflows its context and keeps the context as it was.
                self.emit(events.error("INVALID_ARGUMENT", f"text does not fit the conversation ({exc.message})"))
                return
            if resent:
                # The client resends a turn it never saw acknowledged, and it was stored: answer it, store it once.
                self._pending_typed = None
            else:
                await self._persist(StoredTurn(self.next_sequence, "user", text, tuple(self.tokenizer.encode(text)), 0))
        # A typed turn has no speech embeddings: its hidden states stand in for the user-input vector.
        await self._respond(text_query=hidden.mean(axis=0))

    async def replay(self, history: list[StoredTurn]) -> None:
        """Feed the system prompt and the stored history into the (fresh) context; an unanswered typed turn
        at the end waits outside it until the client resends it or moves on (``_pending_typed``)."""
        pending = self._pending_typed
        turns = history[:-1] if pending is not None and history and history[-1] == pending else history
        if turns is not history or pending is None:
            await self.context.replay(turns, instructions=self.settings.instructions)
            return
        self._pending_typed = None  # the history moved on since: nothing is pending any more
        await self.context.replay(history, instructions=self.settings.instructions)

    async def _flush_pending_typed(self) -> None:
        """The stored but unanswered typed turn enters the context (it was left out of the replay): the
        client moved on without resending it, so the next turn follows it, as in the stored history."""
        pending, self._pending_typed = self._pending_typed, None
        if pending is not None:
            ids = self.context.prompt.user_text(pending.text)[0]
            assert isinstance(ids, list)
            await self.context.append(ids=ids)

    # Responding ------------------------------------------------------------------------------------

    async def _close_spoken_turn(self, end_rows: int | None = None) -> Turn | None:
        """Close and store the spoken user turn (at its end point: ``end_rows`` speech rows); None when a
        speech quota refuses it (then it is forgotten)."""
        turn = self.turn
        assert turn is not None
        close = self.context.prompt.user_speech_close()
        if end_rows is not None and end_rows < turn.frames:
            # The silence after the end point leaves the context and the stored turn alike.
            cut = turn.start_length + len(self.context.prompt.user_speech_open()) + end_rows
            await self.context.append(ids=close, truncate_to=cut)
            turn.keep_rows(end_rows)
        else:
            await self.context.append(ids=close)
        try:
            await self._persist(turn.stored(self.next_sequence))
        except SpeechQuotaExceeded as exc:
            # Not stored, so not acknowledged: the context forgets it too, and the session goes on (typed turns work).
            await self.context.append(truncate_to=turn.start_length)
            self.turn = None
            self.emit(events.error(exc.code_name, exc.message))
            return None
        self.emit(events.speech_stopped(self.vad.last_voiced_ms if self.vad.last_voiced_ms >= 0 else self.vad.audio_ms))
        return turn

    async def _respond(self, text_query: np.ndarray | None = None, end_rows: int | None = None) -> None:
        """End the user turn (persisted first) and start the assistant's response beside the listen path.

        A held speculative response started at this turn's end point becomes the response (its deltas
        go out at once); otherwise the speak path starts now from the same context.
        """
        assert self._group is not None
        async with self._lock:
            if self.response is not None:
                return
            decided_ns = time.time_ns()
            turn = self.turn if self.turn is not None else Turn()
            query = text_query
            held, self.held = self.held, None
            if query is None:
                closed = await self._close_spoken_turn(end_rows)
                if closed is None:
                    await self._drop(held)
                    return
                turn = closed
                query = np.concatenate(turn.embeddings).mean(axis=0)
            if held is not None and (held.end_rows != end_rows or held.response_id != self.next_sequence):
                await self._drop(held)  # started on another end point (or another turn got stored since)
                held = None
            self.turn = None
            self.end_point.reset()
            opening = self.context.prompt.assistant_open()
            deltas = None
            if held is not None:
                # The held fork is this context's continuation; the context itself becomes the listen fork.
                await self.context.append(ids=self.context.prompt.user_speech_open())
                fork_id = self.context.adopt(held.fork_id, held.base_length)
                speak = held.speak
                deltas = held.commit()
            else:
                fork_id = await self.context.fork(self.context.prompt.user_speech_open())
                speak = self._speak_path(self.context.stream_id, query, seed=self.next_sequence)
            response = Response(
                id=self.next_sequence,
                speak=speak,
                fork_id=fork_id,
                start_length=self.context.length + len(opening),
                turn=turn,
                end_of_speech_at=self._last_voiced_at,
            )
            self.response = response
            self.emit(events.response_started(response.id))
            start_turn_trace(response, self.session_id, decided_ns)
            if held is not None:
                stage_span(
                    response.span,
                    "speculation",
                    held.started_ns,
                    decided_ns,
                    held_audio_ms=held.held_audio_ms,
                    held_text_deltas=held.held_text,
                )
            # The task inherits the current span: the speak path's Triton calls carry its traceparent.
            with trace.use_span(response.span, end_on_exit=False):
                response.task = self._group.create_task(self._speak(response, deltas))
            stage_span(response.span, "respond_decision", decided_ns, time.time_ns())

    def _speak_path(self, backbone_id: int, query: np.ndarray, *, seed: int) -> SpeakPath:
        return SpeakPath(
            self.models,
            backbone_id,
            prompt_ids=self.context.prompt.assistant_open(),
            user_embedding=query,
            decode=self.tokenizer.decode,
            config=SpeakConfig(
                max_new_tokens=self.settings.max_response_tokens,
                temperature=self.settings.temperature,
                seed=seed,
            ),
        )

    async def _drop(self, held: HeldResponse | None) -> None:
        self.held = held
        await self._discard_held()

    async def _speak(self, response: Response, deltas: AsyncIterator[TextDelta | AudioDelta] | None = None) -> None:
        try:
            await playback.deliver(response, self.emit, self.playback_lead_ms, deltas)
            await self._finish(response, interrupted=False, played_ms=response.sent_ms)
        except TritonStageError as exc:
            self._lose(exc)

    async def _interrupt(self, played_ms: int) -> None:
        """Barge-in or client cancel: stop every Triton stream of the turn and store what was played."""
        response = self.response
        if response is None or response.finished:
            return
        response.finished = True
        metrics.INTERRUPTIONS.inc()
        response.speak.cancel()
        if response.task is not None:
            response.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TritonStageError):
                await response.task
        await response.speak.release()
        await self._complete(response, interrupted=True, played_ms=response.played_ms(reported_ms=played_ms))

    async def _finish(self, response: Response, *, interrupted: bool, played_ms: int) -> None:
        if response.finished:
            return
        response.finished = True
        await self._complete(response, interrupted=interrupted, played_ms=played_ms)

    async def _complete(self, response: Response, *, interrupted: bool, played_ms: int) -> None:
        async with self._lock:
            generated = response.speak.token_ids
            keep = token_count_for_played(played_ms, len(generated)) if interrupted else len(generated)
            ids = tuple(generated[:keep])
            await self.context.end_assistant_turn(response.start_length, ids, interrupted=interrupted)
            text = self.tokenizer.decode(list(ids))
            await self._persist(StoredTurn(response.id, "assistant", text, ids, played_ms, interrupted))
            stage_ms = latencies(response)
            metrics.record_latencies(stage_ms)
            end_turn_trace(response, interrupted=interrupted, played_ms=played_ms, text_tokens=len(ids))
            # Over before the client hears so: a commit or text sent on `response_done` must not find it in progress.
            self.response = None
            self.emit(
                events.response_done(
                    response.id, interrupted=interrupted, played_ms=played_ms, text=text, latencies=stage_ms
                )
            )
            await self.context.close_sequence(response.fork_id)
            if interrupted and response.listened:
                # The barge-in's audio becomes the start of the next user turn, after the cut assistant turn.
                self.turn = Turn(voiced=True)
                for rows in response.listened:
                    await self._append_user_speech(rows)
                    self.turn.embeddings.append(rows)

    async def _persist(self, turn: StoredTurn) -> None:
        """Append the turn, fenced: LeaseLost (the session has a newer owner) ends this session, storing nothing."""
        await self.store.append_turn(self.session_id, turn, fence=self.fence)
        self.next_sequence = turn.sequence + 1

    async def _shutdown(self) -> None:
        with contextlib.suppress(TritonStageError):
            await self._discard_held()
        with contextlib.suppress(TritonStageError):
            await self.listen.close()
        with contextlib.suppress(TritonStageError):
            await self.context.close()
