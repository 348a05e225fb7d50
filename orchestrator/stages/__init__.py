"""The orchestrator's stages: small async units over the Triton models, each with one contract.

``listen``: PCM chunk -> encoder -> backbone append -> duplex probabilities.
``speak``: backbone generation -> speech_lm -> vocoder, as concurrent stages joined by bounded
queues, so the first audio leaves before the text is complete.
"""
