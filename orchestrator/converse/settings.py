"""A session's settings: from the client's SessionConfig, to Redis as JSON, and back."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from minmo.v1 import minmo_pb2 as pb

from orchestrator.errors import InvalidArgument

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer briefly."
_SPECULATION: dict[pb.Speculation.ValueType, bool | None] = {
    pb.SPECULATION_UNSPECIFIED: None,
    pb.SPECULATION_ON: True,
    pb.SPECULATION_OFF: False,
}
DEFAULT_MAX_RESPONSE_TOKENS = 64
MAX_RESPONSE_TOKENS = 1024


@dataclass(frozen=True)
class SessionSettings:
    instructions: str = DEFAULT_INSTRUCTIONS
    encoding: Literal["pcm16", "float32"] = "pcm16"
    sample_rate_hz: int = 16_000
    turn_detection: Literal["model", "client"] = "model"
    max_response_tokens: int = DEFAULT_MAX_RESPONSE_TOKENS
    temperature: float = 0.0
    speculation: bool | None = None  # None: the server's default (minmo serve --speculation)

    @classmethod
    def from_proto(cls, config: pb.SessionConfig) -> SessionSettings:
        fmt = config.input_audio_format
        if fmt.encoding not in (pb.AudioFormat.ENCODING_UNSPECIFIED, pb.AudioFormat.PCM16, pb.AudioFormat.FLOAT32):
            raise InvalidArgument(f"input_audio_format.encoding {fmt.encoding} is unknown: use PCM16 or FLOAT32")
        rate = fmt.sample_rate_hz or 16_000
        if not 8_000 <= rate <= 48_000:
            raise InvalidArgument(f"input_audio_format.sample_rate_hz {rate} is unsupported: use 8000 to 48000")
        if config.turn_detection not in (
            pb.TURN_DETECTION_UNSPECIFIED,
            pb.TURN_DETECTION_MODEL,
            pb.TURN_DETECTION_CLIENT,
        ):
            raise InvalidArgument(f"turn_detection {config.turn_detection} is unknown: use MODEL or CLIENT")
        tokens = config.max_response_tokens or DEFAULT_MAX_RESPONSE_TOKENS
        if not 1 <= tokens <= MAX_RESPONSE_TOKENS:
            raise InvalidArgument(f"max_response_tokens must be in [1, {MAX_RESPONSE_TOKENS}], got {tokens}")
        if not 0.0 <= config.temperature <= 2.0:
            raise InvalidArgument(f"temperature must be in [0, 2], got {config.temperature}")
        if len(config.instructions) > 4096:
            raise InvalidArgument("instructions must be at most 4096 characters")
        if config.speculation not in _SPECULATION:  # an enum value newer than this server
            raise InvalidArgument(f"speculation {config.speculation} is unknown: use ON, OFF or leave it unset")
        return cls(
            instructions=config.instructions or DEFAULT_INSTRUCTIONS,
            encoding="float32" if fmt.encoding == pb.AudioFormat.FLOAT32 else "pcm16",
            sample_rate_hz=rate,
            turn_detection="client" if config.turn_detection == pb.TURN_DETECTION_CLIENT else "model",
            max_response_tokens=tokens,
            temperature=float(config.temperature),
            speculation=_SPECULATION[config.speculation],
        )

    def to_proto(self) -> pb.SessionConfig:
        return pb.SessionConfig(
            instructions=self.instructions,
            input_audio_format=pb.AudioFormat(
                encoding=pb.AudioFormat.FLOAT32 if self.encoding == "float32" else pb.AudioFormat.PCM16,
                sample_rate_hz=self.sample_rate_hz,
            ),
            turn_detection=pb.TURN_DETECTION_CLIENT if self.turn_detection == "client" else pb.TURN_DETECTION_MODEL,
            max_response_tokens=self.max_response_tokens,
            temperature=self.temperature,
            speculation={value: key for key, value in _SPECULATION.items()}[self.speculation],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SessionSettings:
        return cls(**values)
