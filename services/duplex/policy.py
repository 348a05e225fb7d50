"""The runtime decision policy, re-exported for the model side (training, evaluation, perf).

It lives in the numpy-only :mod:`minmo_contracts.turn_taking` so the orchestrator uses it without
torch; :mod:`services.duplex.evaluate` and ``perf.turn_taking`` score the predictor through this same
policy, so their figures are the runtime's. A gate accepts a CPU tensor row as well as an array.
"""

from minmo_contracts.turn_taking import Decision, DecisionGate, DecisionPolicy

__all__ = ["Decision", "DecisionGate", "DecisionPolicy"]
