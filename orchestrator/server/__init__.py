"""The orchestrator's gRPC server (``minmo serve``): the MinMo service shell, health, reflection, error mapping."""
