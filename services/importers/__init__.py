"""Checkpoint importers: real checkpoints -> the project's stage folders (``minmo models import``).

Each importer checks every key and shape before it writes anything, and names what is missing,
unexpected or mis-shaped (expected vs got). See each module's docstring for the source layout.
Nothing is imported here so that ``minmo --help`` does not load torch.
"""
