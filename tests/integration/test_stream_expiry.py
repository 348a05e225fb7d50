"""Per-stream state is freed when a stream goes idle, even with no further traffic."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonStageError
from tests.integration.helpers import open_streams

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_an_idle_stream_expires_and_then_is_unknown(models: TritonModels, triton: TritonProcess) -> None:
    original = (await models.client.get_model_config("duplex", as_json=True))["config"]
    short = json.loads(json.dumps(original))
    short["parameters"]["stream_idle_seconds"] = {"string_value": "1"}
    await models.client.load_model("duplex", config=json.dumps(short))
    try:
        stream_id = new_stream_id()
        frame = {"HIDDEN": np.zeros((1, 256), np.float32), "SPEAKING": np.array([False])}
        await models.infer("duplex", frame, sequence_id=stream_id, start=True)
        assert open_streams(triton.ports.metrics, "duplex") == 1
        await asyncio.sleep(2.5)  # idle 1 s, swept every 0.5 s
        assert open_streams(triton.ports.metrics, "duplex") == 0
        with pytest.raises(TritonStageError, match="unknown stream") as info:
            await models.infer("duplex", frame, sequence_id=stream_id)
        assert info.value.invalid
    finally:
        await models.client.load_model("duplex", config=json.dumps(original))
