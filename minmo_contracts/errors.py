"""How a model's error says what it is: a streamed error carries only its text, so the text is marked.

A decoupled model's error reaches the client as a message without a status code, so the models prefix
the caller's faults (INVALID_ARG) and mark a refusal at capacity, and the orchestrator reads the same
markers to map them to INVALID_ARGUMENT and RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

INVALID_PREFIX = "invalid request: "
CAPACITY_MARKER = "[MODEL_AT_CAPACITY]"
