"""Start and stop the local stack (Triton on the CPU, Redis) that the demo and the tests use."""
