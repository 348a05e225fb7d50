"""The five models' configs as the CPU profile serves them: the one definition of ``model_repository/``.

``model_repository/<model>/config.pbtxt`` is this, written by ``python -m services.model_configs``
(and committed, because Triton and newcomers read the folder as it is). The GPU profile starts from
the same definitions and changes only placement and parameters (``services.gpu_profile.configs``).
"""

from __future__ import annotations

from minmo_contracts import backbone, duplex, encoder, speech_lm, vocoder
from services.model_configs.spec import ModelConfig, Parameter

# The unary models: Triton's sequence batcher hands execute() the chunks of many streams at once.
UNARY_BATCHING = (
    "Triton batches chunks of different streams into one execute() (one request per stream at most);\n"
    "the adapter runs them as one pass. Inputs are ragged: the Python backend gets each request apart."
)
# The decoupled models: their own step scheduler batches (services/triton/scheduler.py).
STEP_BATCHING = (
    "execute() may get requests of several streams at once; the model's step scheduler batches their\n"
    "work token by token (iteration-level batching), so this only sizes the hand-over."
)
# services.triton.serving.DEFAULT_MAX_STEP_BATCH (tests/unit/test_gpu_profile_config.py keeps them equal).
MAX_STEP_BATCH = Parameter(
    "max_step_batch", "64", "Most streams one scheduler step runs together (more wait for the next step)."
)


def _stream_parameters(max_streams: int) -> tuple[Parameter, ...]:
    """What every adapter reads (services/triton/serving.py); weights_dir unset means MINMO_WEIGHTS_DIR."""
    return (
        Parameter("weights_dir", "${weights_dir}"),
        Parameter("max_streams", str(max_streams)),
        Parameter("stream_idle_seconds", "600"),
        Parameter("torch_threads", "1"),
    )


ENCODER = ModelConfig(
    encoder.CONTRACT,
    summary=(
        "Speech encoder: 16 kHz mono float32 PCM chunks in, one LLM-width embedding per 120 ms out.\n"
        "SenseVoice SAN-M encoder + MinMo input projector, streaming with chunk-masked attention."
    ),
    batching_note=UNARY_BATCHING,
    parameters=_stream_parameters(256),
)
BACKBONE = ModelConfig(
    backbone.CONTRACT,
    summary=(
        "LLM backbone (Qwen2 architecture): appends text ids and speech embeddings to a session's context\n"
        "(KV cache) and streams generated tokens, each with its last-layer hidden state and embedding.\n"
        "Decoupled: one response for the appended positions, one per generated token, then FINAL."
    ),
    batching_note=STEP_BATCHING,
    parameters=(
        *_stream_parameters(64),
        MAX_STEP_BATCH,
        Parameter(
            "max_prefill_rows_per_step",
            "256",
            "A longer prefill runs as several steps, so it shares each step with the other sessions' tokens.",
        ),
    ),
)
DUPLEX = ModelConfig(
    duplex.CONTRACT,
    summary=(
        "Full-duplex predictor: for each new 120 ms frame of backbone hidden states, the probabilities of\n"
        "keep listening / respond now / stop speaking. Keeps a rolling window per stream."
    ),
    batching_note=UNARY_BATCHING,
    parameters=_stream_parameters(256),
)
SPEECH_LM = ModelConfig(
    speech_lm.CONTRACT,
    summary=(
        "Speech-token LM (CosyVoice 2 LM behind MinMo's output projector): takes groups of semantic vectors\n"
        f"(text-token embedding + hidden state) and streams speech tokens, {speech_lm.TOKENS_PER_GROUP} per group "
        f"of {speech_lm.TEXT_PER_GROUP} by default."
    ),
    batching_note=STEP_BATCHING,
    parameters=(*_stream_parameters(128), MAX_STEP_BATCH),
)
VOCODER = ModelConfig(
    vocoder.CONTRACT,
    summary=(
        "Token2wav: CosyVoice 2 flow matching + HiFT vocoder. Speech tokens in (25 Hz), 24 kHz PCM out,\n"
        "exactly 960 samples per token once the stream ends (END flushes the held-back overlap)."
    ),
    batching_note=STEP_BATCHING,
    parameters=(*_stream_parameters(128), MAX_STEP_BATCH),
)

CPU_CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (ENCODER, BACKBONE, DUPLEX, SPEECH_LM, VOCODER)}
