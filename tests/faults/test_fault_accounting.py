"""The pieces the fault suite's verdicts rest on, checked without a stack: failure classes and the ledger."""

from __future__ import annotations

from typing import Literal

import pytest
from tritonclient.utils import InferenceServerException

from orchestrator.stages.speak import triton_failure
from orchestrator.state.records import StoredTurn
from orchestrator.triton.client import TritonModels, classify
from orchestrator.triton.errors import TritonUnavailableError
from tests.faults.conversation import Ledger


@pytest.mark.parametrize(
    "message",
    [
        "Stub process 'backbone_0_0' is not healthy.",
        "no response within the 3 s deadline (DEADLINE_EXCEEDED)",
        "failed to connect to all addresses",
    ],
)
def test_failures_that_pass_are_unavailable(message: str) -> None:
    assert isinstance(classify("backbone", InferenceServerException(message)), TritonUnavailableError)


def test_a_request_error_stays_a_stage_error() -> None:
    error = classify("duplex", InferenceServerException("[INVALID_ARG] unknown stream 7"))
    assert not isinstance(error, TritonUnavailableError) and error.invalid


def test_a_triton_failure_is_unwrapped_from_nested_task_groups() -> None:
    cause = TritonUnavailableError("vocoder", "gone")
    assert triton_failure(ExceptionGroup("outer", [ExceptionGroup("inner", [cause])])) is cause
    mixed = ExceptionGroup("mixed", [cause, ValueError("a bug")])
    assert triton_failure(mixed) is None, "a bug next to a Triton failure must stay visible"


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline_seconds"):
        TritonModels("127.0.0.1:1", deadline_seconds=0)


def turn(sequence: int, role: Literal["user", "assistant"], text: str) -> StoredTurn:
    return StoredTurn(sequence, role, text, (), 0)


def test_the_ledger_counts_lost_and_duplicated_turns() -> None:
    ledger = Ledger([("user", "a"), ("assistant", "x"), ("user", "b")])
    stored = [turn(1, "user", "a"), turn(2, "assistant", "x"), turn(3, "user", "b")]
    assert ledger.audit(stored) == (0, 0)
    assert ledger.audit([stored[0], stored[2]]) == (1, 0)
    assert ledger.audit([*stored, turn(4, "user", "b")]) == (0, 1)
