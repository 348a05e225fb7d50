"""The MinMo Serve orchestrator: gRPC API, session state, and the local development stack."""
