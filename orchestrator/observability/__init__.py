"""Traces (OpenTelemetry) and metrics (Prometheus) of the orchestrator."""
