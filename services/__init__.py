"""Plain torch modules for the five MinMo stages; Triton adapters in model_repository/ wrap them.

Beside the stages: what the adapters share (``triton/``), the model configs (``model_configs/``), the
GPU profile (``gpu_profile/``) and the checkpoint importers (``importers/``). The tensor contracts
both sides use live outside, in ``minmo_contracts``.
"""
