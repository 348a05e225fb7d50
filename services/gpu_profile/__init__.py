"""The GPU profile of the model repository: TensorRT-LLM backbone, KIND_GPU stages, engine build.

Everything here is generated from one values file (``values.py``) through strict templates
(``templating.py``), so a deployment's sizes live in one place and a forgotten value fails the
generation instead of reaching Triton as a literal ``${...}``.
"""
