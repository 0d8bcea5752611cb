"""Build the single-node ONNX model of a :class:`~.translate.NodeSpec` with ``onnx.helper``.

onnx is imported inside the functions: importing this module costs nothing without it.
"""

from __future__ import annotations

from typing import Any

from .translate import NodeSpec

ELEMENT_TYPES: dict[str, str] = {"float64": "DOUBLE", "float32": "FLOAT", "float16": "FLOAT16",
                                 "bfloat16": "BFLOAT16"}
"""The ``onnx.TensorProto`` element type name of each dtype under test."""

_INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "BatchNormalization": ("X", "scale", "B", "input_mean", "input_var"),
    "LayerNormalization": ("X", "Scale", "B"),
    "RMSNormalization": ("X", "scale"),
    "InstanceNormalization": ("input", "scale", "B"),
    "GroupNormalization": ("X", "scale", "bias"),
    "LpNormalization": ("input",),
    "LRN": ("X",),
}
"""The operators' own input names (onnx 1.23.2 schemas), used as graph input names."""


def input_names(spec: NodeSpec) -> tuple[str, ...]:
    """The graph input names of ``spec``'s present inputs, in ONNX's positional order."""
    names = _INPUT_NAMES[spec.op]
    return tuple(n for n, shape in zip(names, spec.inputs, strict=False) if shape is not None)


def element_type(dtype: str) -> int:
    """The ``onnx.TensorProto`` element type of ``dtype``."""
    from onnx import TensorProto

    if dtype not in ELEMENT_TYPES:
        raise ValueError(f"argument 'dtype': got {dtype!r}, expected one of "
                         f"{list(ELEMENT_TYPES)}")
    value: int = getattr(TensorProto, ELEMENT_TYPES[dtype])
    return value


def build(spec: NodeSpec) -> Any:
    """The ``onnx.ModelProto`` of ``spec``: one node, static input and output shapes.

    An omitted optional input is the empty name in the node's input list, ONNX's convention.
    The model passes strict shape inference (the stated output shapes must agree with the
    operator's) and ``onnx.checker``'s full check, so a malformed translation fails here (an
    adapter bug), before any runtime sees it.
    """
    import onnx
    from onnx import helper

    names = _INPUT_NAMES[spec.op]
    if len(spec.inputs) > len(names):
        raise ValueError(f"argument 'spec': got {len(spec.inputs)} inputs for {spec.op}, "
                         f"expected at most {len(names)}")
    node_inputs: list[str] = []
    graph_inputs = []
    for name, shape in zip(names, spec.inputs, strict=False):
        if shape is None:
            node_inputs.append("")
            continue
        node_inputs.append(name)
        graph_inputs.append(helper.make_tensor_value_info(name, element_type(spec.dtype),
                                                          list(shape)))
    while node_inputs and not node_inputs[-1]:
        node_inputs.pop()
    node = helper.make_node(spec.op, node_inputs, [n for n, _, _ in spec.outputs])
    # make_attribute stores a Python float as a 32-bit FLOAT attribute (O1 in the errata).
    node.attribute.extend(helper.make_attribute(k, list(v) if isinstance(v, tuple) else v)
                          for k, v in spec.attributes)
    outputs = [helper.make_tensor_value_info(n, element_type(t), list(shape))
               for n, t, shape in spec.outputs]
    graph = helper.make_graph([node], f"normspec_{spec.op}", graph_inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)],
                              producer_name="normspec")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(inferred, full_check=True)
    return inferred
