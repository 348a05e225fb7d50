"""The models' ``config.pbtxt`` files from one definition: the CPU repository and the GPU profile.

Tensors come from the contracts (:mod:`minmo_contracts`), batching, placement and parameters from
:mod:`services.model_configs.definitions`; :mod:`services.model_configs.pbtxt` writes the text.
``python -m services.model_configs`` rewrites ``model_repository/*/config.pbtxt`` (``--check``
only compares); ``minmo gpu config`` renders the GPU variants (:mod:`services.gpu_profile.configs`).
"""
