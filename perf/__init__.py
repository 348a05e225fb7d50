"""Benchmarks of the streaming paths (run by `make perf`, never by the tests)."""
