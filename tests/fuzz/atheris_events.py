"""libFuzzer (atheris) harness for Converse's request parsing and event validation, in process.

Bytes go where gRPC puts them: ``ClientEvent.FromString``, then ``commands.opening`` (as a first event)
and ``commands.command`` (as a later one). A finding is any exception other than the parser's
``DecodeError`` (which must map to INVALID_ARGUMENT) and ``InvalidArgument``, or accepted settings
that break what the session relies on.
"""

from __future__ import annotations

import math
import sys

import atheris

with atheris.instrument_imports(include=["orchestrator"]):
    from google.protobuf.message import DecodeError
    from minmo.v1 import minmo_pb2 as pb

    from orchestrator.converse import commands
    from orchestrator.converse.settings import SessionSettings
    from orchestrator.errors import InvalidArgument, as_domain_error


def _check_settings(settings: SessionSettings) -> None:
    assert 8_000 <= settings.sample_rate_hz <= 48_000 and settings.encoding in ("pcm16", "float32")
    assert math.isfinite(settings.temperature) and 0.0 <= settings.temperature <= 2.0
    assert SessionSettings.from_proto(settings.to_proto()) == settings


def test_one_input(raw: bytes) -> None:
    try:
        event = pb.ClientEvent.FromString(raw)
    except DecodeError as exc:
        assert isinstance(as_domain_error(exc), InvalidArgument)
        return
    try:
        start = commands.opening(event)
    except InvalidArgument as exc:
        assert exc.message
    else:
        if isinstance(start, commands.StartSession):
            _check_settings(start.settings)
    try:
        command = commands.command(event)
    except InvalidArgument as exc:
        assert exc.message
    else:
        assert not isinstance(command, commands.Cancel) or command.played_ms >= 0


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
