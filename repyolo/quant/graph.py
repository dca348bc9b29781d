"""Small ONNX graph utilities for quantization: which nodes are convs, which form the box
decoding tail, which convs stayed FP32 in a QDQ model, and metadata hand-over.

Everything here works on ``onnx.ModelProto`` graphs in topological order (what the exporter writes).
"""
from __future__ import annotations

import json
from collections import defaultdict

CONV_TYPES = ("Conv", "ConvTranspose")


def conv_nodes(model) -> list[str]:
    """Names of the Conv / ConvTranspose nodes, in graph order."""
    return [n.name for n in model.graph.node if n.op_type in CONV_TYPES]


def _consumers(graph) -> dict[str, list]:
    out = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                out[name].append(node)
    return out


def decode_tail(model) -> tuple[list[str], list[str]]:
    """The head's prediction convs and the box-decoding tail after them.

    A *prediction conv* is a conv from whose output a graph output is reached without passing
    another conv (the ``cls_preds`` / ``reg_preds`` 1x1 convs). The *tail* is every node fed,
    directly or not, by a prediction conv: reshape / transpose / concat of the levels, sigmoid
    of the scores, distance -> box decoding. Returns ``(pred_convs, tail_nodes)`` (names).
    """
    graph = model.graph
    consumers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    memo: dict[str, bool] = {}

    def reaches_output(tensor: str, depth: int = 0) -> bool:
        """True when ``tensor`` reaches a graph output through non-conv nodes only."""
        if tensor in outputs:
            return True
        if tensor in memo:
            return memo[tensor]
        memo[tensor] = False  # cycle guard (graphs are acyclic, but be safe)
        ok = any(n.op_type not in CONV_TYPES and any(reaches_output(o, depth + 1) for o in n.output)
                 for n in consumers.get(tensor, []))
        memo[tensor] = ok
        return ok

    preds = [n for n in graph.node if n.op_type in CONV_TYPES and any(reaches_output(o) for o in n.output)]
    tail, seen = [], set()
    stack = [o for n in preds for o in n.output]
    while stack:
        tensor = stack.pop()
        for node in consumers.get(tensor, []):
            if node.name not in seen and node.op_type not in CONV_TYPES:
                seen.add(node.name)
                stack.extend(node.output)
    order = {n.name: i for i, n in enumerate(graph.node)}
    tail = sorted(seen, key=order.get)
    return [n.name for n in preds], tail


def unshare_initializers(model) -> int:
    """Give every Conv its own weight and bias initializer (in place).

    Graph simplifiers merge identical initializers (e.g. all-zero biases) into one tensor used by
    several convs; the quantizer stores one quantized copy per initializer name, which would tie
    the bias scales of unrelated convs. Returns the number of copies made.
    """
    import onnx

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    seen: set[str] = set()
    copies = 0
    for node in graph.node:
        if node.op_type not in CONV_TYPES:
            continue
        for k in range(1, len(node.input)):
            name = node.input[k]
            if name not in inits:
                continue
            if name in seen:
                new = onnx.TensorProto()
                new.CopyFrom(inits[name])
                new.name = f"{name}__{node.name.strip('/').replace('/', '_')}"
                graph.initializer.append(new)
                node.input[k] = new.name
                copies += 1
            else:
                seen.add(name)
    return copies


def dequantized_tensors(model) -> set[str]:
    """Outputs of DequantizeLinear nodes."""
    return {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}


def quantized_convs(model) -> list[str]:
    """Convs of a QDQ model whose weight comes from a DequantizeLinear (INT8 convs), graph order."""
    dq = dequantized_tensors(model)
    return [n.name for n in model.graph.node if n.op_type in CONV_TYPES and len(n.input) > 1 and n.input[1] in dq]


def float_convs(model) -> list[str]:
    """Convs of a QDQ model that stayed in floating point (weight not dequantized), graph order."""
    q = set(quantized_convs(model))
    return [n for n in conv_nodes(model) if n not in q]


def qdq_counts(model) -> dict[str, int]:
    """``{"QuantizeLinear": n, "DequantizeLinear": m}``."""
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for n in model.graph.node:
        if n.op_type in counts:
            counts[n.op_type] += 1
    return counts


def read_metadata(model) -> dict[str, str]:
    """The ``metadata_props`` string map."""
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(model, props: dict[str, str], extra: dict | None = None) -> None:
    """Replace ``metadata_props`` with ``props`` plus ``extra`` (values JSON-encoded unless str)."""
    merged = dict(props)
    for key, value in (extra or {}).items():
        merged[key] = value if isinstance(value, str) else json.dumps(value)
    del model.metadata_props[:]
    for key, value in merged.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


__all__ = ["CONV_TYPES", "conv_nodes", "decode_tail", "unshare_initializers", "quantized_convs", "float_convs",
           "qdq_counts", "read_metadata", "write_metadata", "dequantized_tensors"]
