"""Helpers shared by every stage: weights files, seeding, per-stream state, Triton parameters."""
