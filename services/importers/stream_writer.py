"""Write one ``model.safetensors`` from tensors that arrive one at a time.

``safetensors.torch.save_file`` needs every tensor in memory at once: for Qwen2.5-7B that is 15 GB
on top of whatever the reader holds. The format is simple (an 8-byte little-endian header length,
a JSON header with dtype, shape and byte offsets, then the raw bytes in header order), so the
header is written from the planned shapes first and the tensors are appended as the shards are
read, holding at most one tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_streamed(
    path: Path,
    plan: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    metadata: Mapping[str, str],
) -> None:
    """Write ``tensors`` (yielded in ``plan`` order) under the header ``plan`` describes.

    Raises ValueError if a tensor arrives out of order or differs from its plan, leaving no file.
    """
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    order = list(plan)
    for name in order:
        dtype, shape = plan[name]
        size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data section to 8 bytes
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as out:
            out.write(struct.pack("<Q", len(raw)))
            out.write(raw)
            written = 0
            for name, tensor in tensors:
                if written >= len(order) or name != order[written]:
                    raise ValueError(f"tensor {name} arrived out of the planned order")
                dtype, shape = plan[name]
                if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                    raise ValueError(f"tensor {name} is {tensor.dtype}{tuple(tensor.shape)}, planned {dtype}{shape}")
                data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
                out.write(data.data)
                written += 1
            if written != len(order):
                raise ValueError(f"only {written} of {len(order)} planned tensors were written")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
