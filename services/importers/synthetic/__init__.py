"""Synthetic checkpoints with the real file layouts and key names at tiny sizes, built by code for tests.

Nothing here is a real model: tensors are seeded random. What is real is the folder layout, file
formats, key names and the relations between shapes, so the importers meet exactly what a platform
engineer's downloads contain.
"""
