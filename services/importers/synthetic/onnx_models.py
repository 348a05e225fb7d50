"""Tiny ONNX graphs with the signatures of CosyVoice 2's ``campplus.onnx`` and ``speech_tokenizer_v2.onnx``.

CAM++: input ``input`` ``[B, T, 80]`` -> output ``output`` ``[B, 192]``; here mean over time, then a
seeded 80 x 192 projection, so a test can compute the expected embedding with numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_campplus(path: Path, *, seed: int = 0, out_dim: int = 192) -> np.ndarray:
    """Write the model; returns its projection matrix ``[80, out_dim]``."""
    weight = np.random.default_rng(seed).standard_normal((80, out_dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weight"], ["output"]),
        ],
        "campplus",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", out_dim])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"), numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weight


def build_speech_tokenizer(path: Path) -> None:
    """``feats`` [1, 128, T] float and ``feats_length`` [1] int32 -> ``indices`` (a stand-in computation)."""
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["feats"], ["indices"], axis=1, keepdims=0)],
        "speech_tokenizer",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, "T"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
