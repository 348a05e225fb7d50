"""Hypothesis strategies for what a Converse client can put on the wire, well-formed or not.

Enum fields take raw ints (proto3 keeps unknown values), numbers take the extremes of their wire type
(int32 bounds, NaN, Inf), strings go past the documented limits. Everything here is a message the
protobuf library itself accepts; bytes that are no message at all come from ``raw_messages``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from minmo.v1 import minmo_pb2 as pb

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
# Around the supported range (8000 to 48000), its edges, 0 (the default) and the int32 extremes.
SAMPLE_RATES = st.one_of(
    st.sampled_from([0, 8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 7_999, 48_001, -16_000, 2**31 - 1]),
    st.integers(min_value=1, max_value=96_000),
    INT32,
)
VALID_RATES = st.one_of(st.sampled_from([0, 8_000, 16_000, 44_100, 48_000]), st.integers(8_000, 48_000))
ENUM_VALUES = st.one_of(st.integers(min_value=0, max_value=3), INT32)
FLOATS = st.one_of(st.floats(width=32), st.sampled_from([0.0, 2.0, 2.0000002, -0.0, float("nan"), float("inf")]))
# Long enough to pass the 4096-character limits, short enough to keep examples fast.
TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda unit, n: (unit * n)[:n], st.text(min_size=1, max_size=4), st.integers(4_090, 4_100)),
    st.sampled_from(["", " ", "\n\t", "\x00", "hello", "a" * 4096, "a" * 4097, "\U0001f600" * 4097]),
)

# For the end-to-end fuzzer: short texts, and long ones only past what any stage accepts. A text that
# fits the smoke backbone's 4096 positions (~4000 characters) costs a multi-second CPU prefill that goes
# on after the call ends; shrinking replays such cases back to back and queues them on Triton's one
# backbone instance past the 10 s call deadline. That is load, not input handling (see the report), so
# the 4096-character boundary is covered by the unit properties and the overflow by explicit examples.
E2E_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["", " ", "\x00", "a" * 4097, "\U0001f600" * 4097, "\U0001f600" * 2000]),
)


def pcm16_bytes(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


@st.composite
def float32_chunks(draw: st.DrawFn, max_samples: int = 2_000) -> bytes:
    """FLOAT32 audio with NaN, Inf, out-of-range and subnormal values mixed in."""
    values = draw(
        st.lists(
            st.one_of(
                st.floats(min_value=-1, max_value=1, width=32),
                st.floats(width=32),
                st.sampled_from([float("nan"), float("inf"), -float("inf"), 1.0000001, 1e-45, -1.0]),
            ),
            min_size=1,
            max_size=max_samples,
        )
    )
    return np.asarray(values, "<f4").tobytes()


AUDIO_BYTES = st.one_of(
    st.binary(max_size=4_000),
    st.binary(min_size=1, max_size=9).map(lambda b: b * 3),  # odd lengths
    float32_chunks(),
    st.integers(0, 20_000).map(lambda n: b"\x01\x00" * n),  # around the 1 s limit at 16 kHz PCM16
)


@st.composite
def session_configs(draw: st.DrawFn, text: st.SearchStrategy[str] = TEXT) -> pb.SessionConfig:
    return pb.SessionConfig(
        instructions=draw(text),
        input_audio_format=pb.AudioFormat(encoding=draw(ENUM_VALUES), sample_rate_hz=draw(SAMPLE_RATES)),
        turn_detection=draw(ENUM_VALUES),
        max_response_tokens=draw(st.one_of(st.integers(-2, 2_000), INT32)),
        temperature=draw(FLOATS),
    )


def session_starts(text: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[pb.ClientEvent]:
    return st.one_of(
        session_configs(text).map(lambda c: pb.ClientEvent(session=pb.SessionStart(config=c))),
        st.text(max_size=300).map(lambda t: pb.ClientEvent(session=pb.SessionStart(resume_token=t))),
        st.just(pb.ClientEvent(session=pb.SessionStart())),
    )


def client_events(text: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[pb.ClientEvent]:
    """Any single ClientEvent, including none set and a second `session`; ``text`` fills the string fields."""
    return st.one_of(
        session_starts(text),
        AUDIO_BYTES.map(lambda d: pb.ClientEvent(audio=pb.AudioChunk(data=d))),
        text.map(lambda t: pb.ClientEvent(text=pb.TextInput(text=t))),
        st.just(pb.ClientEvent(commit=pb.CommitTurn())),
        st.one_of(st.integers(-1_000, 100_000), INT32).map(
            lambda ms: pb.ClientEvent(cancel=pb.CancelResponse(played_ms=ms))
        ),
        st.just(pb.ClientEvent(end=pb.EndSession())),
        st.just(pb.ClientEvent()),
    )


def raw_messages(text: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[bytes]:
    """Bytes as a broken client sends them: valid messages cut short or spliced, or plain noise."""
    valid = client_events(text).map(lambda e: e.SerializeToString())
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(valid, st.integers(0, 50)).map(lambda v: v[0][: max(0, len(v[0]) - v[1])]),
        st.tuples(valid, st.binary(max_size=20)).map(lambda v: v[0] + v[1]),
        st.binary(max_size=20).map(invalid_utf8_text),
    )


def invalid_utf8_text(payload: bytes) -> bytes:
    """A ClientEvent whose `text.text` (a proto3 string, which must be UTF-8) holds ``\\xff`` + ``payload``."""
    inner = b"\xff" + payload
    text_input = b"\x0a" + _varint(len(inner)) + inner  # TextInput.text: field 1, length-delimited
    return b"\x1a" + _varint(len(text_input)) + text_input  # ClientEvent.text: field 3, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
