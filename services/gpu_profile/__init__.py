"""The GPU profile of the model repository: TensorRT-LLM backbone, KIND_GPU stages, engine build.

Everything here is generated from one values file (``values.py``): the model configs are the CPU
profile's definitions placed on GPUs (``configs.py``), filled through strict templating
(``templating.py``), so a deployment's sizes live in one place and a forgotten value fails the
generation instead of reaching Triton as a literal ``${...}``.
"""
