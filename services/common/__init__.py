"""Helpers shared by every stage: weights files and stage configs, serving precision, seeding, per-stream state."""
