"""Triton-side helpers shared by the five `model_repository/*/1/model.py` adapters.

Nothing here imports ``triton_python_backend_utils`` at module level: that module exists only inside
the Python backend stub, and keeping it out lets the validation logic be unit-tested without Triton.
"""
