"""What every stream of every model shares: the sequence controls and the STOP request.

Every model is stateful: Triton's sequence batcher fills ``START`` and ``END`` from a request's
``sequence_start`` / ``sequence_end`` (the client never sends them as tensors). The decoupled models
also take ``STOP``: a request carrying only it ends the request of the same stream that has the same
request id, within one step, without cancelling an RPC (``orchestrator.triton.stream`` says why).
"""

from __future__ import annotations

import numpy as np

from minmo_contracts.spec import Tensors, TensorSpec

SEQUENCE_START = "START"
SEQUENCE_END = "END"

STOP = TensorSpec(
    "STOP",
    np.bool_,
    (1,),
    optional=True,
    doc="With no other input: stop the request of this stream that has this request id (answered after its FINAL).",
)


def stop_request() -> Tensors:
    return {STOP.name: STOP.scalar(True)}
