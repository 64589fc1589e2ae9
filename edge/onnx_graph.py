"""The ONNX graph signature of a bundle's tower, read straight from the protobuf (no `onnx` package on the device,
and no onnxruntime session built just to validate); the big weight blobs are skipped, not parsed.

`read_graph_signature(path)` gives the inputs / outputs (names, element types, shapes) and the opset;
`check_graph(...)` compares them with the bundle contract and raises a BundleError naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from firstwords.edge.errors import REEXPORT, BundleError

# ONNX TensorProto.DataType values we care about.
ONNX_FLOAT, ONNX_INT64 = 1, 7
_ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}

@dataclass(frozen=True)
class TensorSig:
    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None  # int = fixed, str = symbolic, None = unknown; None = no shape


@dataclass(frozen=True)
class GraphSig:
    inputs: dict[str, TensorSig]
    outputs: dict[str, TensorSig]
    opset: int | None


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview):
    """Yield (field_number, wire_type, value) with value an int or a memoryview for length-delimited fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = None, pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > end:
            raise ValueError("truncated field")
        yield num, wt, val


def _value_info(buf: memoryview) -> TensorSig:
    name, elem, shape = "", 0, None
    for num, wt, val in _fields(buf):
        if num == 1 and wt == 2:  # ValueInfoProto.name
            name = bytes(val).decode("utf-8", "replace")
        elif num == 2 and wt == 2:  # ValueInfoProto.type -> TypeProto
            for tn, twt, tval in _fields(val):
                if tn == 1 and twt == 2:  # TypeProto.tensor_type
                    for n2, w2, v2 in _fields(tval):
                        if n2 == 1 and w2 == 0:  # elem_type
                            elem = v2
                        elif n2 == 2 and w2 == 2:  # shape -> TensorShapeProto
                            dims: list[int | str | None] = []
                            for dn, dwt, dval in _fields(v2):
                                if dn == 1 and dwt == 2:  # dim
                                    d: int | str | None = None
                                    for n3, w3, v3 in _fields(dval):
                                        if n3 == 1 and w3 == 0:
                                            d = v3
                                        elif n3 == 2 and w3 == 2:
                                            d = bytes(v3).decode("utf-8", "replace")
                                    dims.append(d)
                            shape = tuple(dims)
    return TensorSig(name, elem, shape)


def read_graph_signature(path: str | Path) -> GraphSig:
    """Graph inputs / outputs (names, element types, shapes) and the default-domain opset of an ONNX file."""
    data = memoryview(Path(path).read_bytes())
    inputs: dict[str, TensorSig] = {}
    outputs: dict[str, TensorSig] = {}
    initializers: set[str] = set()
    opset = None
    for num, wt, val in _fields(data):
        if num == 8 and wt == 2:  # ModelProto.opset_import
            domain, version = "", None
            for n2, w2, v2 in _fields(val):
                if n2 == 1 and w2 == 2:
                    domain = bytes(v2).decode()
                elif n2 == 2 and w2 == 0:
                    version = v2
            if domain in ("", "ai.onnx"):
                opset = version
        elif num == 7 and wt == 2:  # ModelProto.graph
            for gn, gwt, gval in _fields(val):
                if gn == 11 and gwt == 2:
                    sig = _value_info(gval)
                    inputs[sig.name] = sig
                elif gn == 12 and gwt == 2:
                    sig = _value_info(gval)
                    outputs[sig.name] = sig
                elif gn == 5 and gwt == 2:  # initializer: only its name (field 8), to drop it from inputs
                    for tn, twt, tval in _fields(gval):
                        if tn == 8 and twt == 2:
                            initializers.add(bytes(tval).decode("utf-8", "replace"))
    for name in initializers:
        inputs.pop(name, None)
    return GraphSig(inputs, outputs, opset)


def _fmt_shape(shape) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_graph(path: Path, source: Path, name: str, in_name: str, in_type: int, in_shape: list,
                out_name: str, dim: int, extra_outputs: tuple[str, ...] = ()) -> None:
    """Input `in_name` of `in_type` with shape in_shape (None = any/dynamic), output `out_name` [N, dim] float,
    besides the optional outputs the manifest names in `extra_outputs`."""
    try:
        sig = read_graph_signature(path)
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise BundleError(f"{source}: {name} is not a readable ONNX model ({e}); {REEXPORT}") from e
    if not sig.outputs and not sig.inputs:
        raise BundleError(f"{source}: {name} holds no ONNX graph; {REEXPORT}")

    def wrong(msg: str) -> BundleError:
        return BundleError(f"{source}: {name}: {msg}; the bundle does not match this firstwords' contract — "
                           f"{REEXPORT}")

    if list(sig.inputs) != [in_name]:
        raise wrong(f"expected one input named {in_name!r}, found {list(sig.inputs)}")
    if [o for o in sig.outputs if o not in extra_outputs] != [out_name]:
        raise wrong(f"expected one output named {out_name!r}, found {list(sig.outputs)}")
    inp, out = sig.inputs[in_name], sig.outputs[out_name]
    if inp.elem_type != in_type:
        raise wrong(f"input {in_name!r} is {_ELEM_NAMES.get(inp.elem_type, inp.elem_type)}, expected "
                    f"{_ELEM_NAMES[in_type]}")
    if out.elem_type != ONNX_FLOAT:
        raise wrong(f"output {out_name!r} is {_ELEM_NAMES.get(out.elem_type, out.elem_type)}, expected float32")
    expect_in = "[" + ", ".join("N" if d is None else str(d) for d in in_shape) + "]"
    if inp.shape is None or len(inp.shape) != len(in_shape) or any(
            e is not None and isinstance(d, int) and d != e for d, e in zip(inp.shape, in_shape, strict=True)):
        raise wrong(f"input {in_name!r} has shape {_fmt_shape(inp.shape)}, expected {expect_in}")
    if isinstance(inp.shape[0], int) and inp.shape[0] != 0:
        raise wrong(f"input {in_name!r} has a fixed batch size {inp.shape[0]}; export it with a dynamic batch axis")
    if out.shape is None or len(out.shape) != 2 or (isinstance(out.shape[1], int) and out.shape[1] != dim):
        raise wrong(f"output {out_name!r} has shape {_fmt_shape(out.shape)}, expected [N, {dim}] "
                    "(embedding_dim in the manifest)")
