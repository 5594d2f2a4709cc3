"""Helpers the reader tests share, in tests/models and tests/training: synthetic crops to read, and
the int8 reader's image-convolution weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_crops(n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    from alprd.synth.plates import plate_crop, render_plate

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        plate = render_plate(rng)
        out.append((plate_crop(rng, plate), plate.text))
    return out


def image_conv_weights(int8_path: Path) -> np.ndarray:
    """The int8 weights of the first convolution of a QDQ reader (the one that reads the image)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_path)).graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.op_type == "Conv")
    dq = producer[conv.input[1]]
    assert dq.op_type == "DequantizeLinear"
    return numpy_helper.to_array(inits[dq.input[0]])
