"""Open Inference Protocol v2 (KServe v2 / Triton HTTP) request and response bodies.

Needs: the raw body of a POST .../infer and its Inference-Header-Content-Length (None when the
whole body is JSON), and the model's tensor specs. Promises: every fault of the client's (bad
JSON, wrong input name, datatype or shape, a binary section of the wrong size) is a
ProtocolError with status 400 and a one-line message; a valid request becomes one float32 array
per input, checked against the spec.

Binary tensor data extension: the body is a JSON header of the given length followed by the raw
little-endian bytes of each input whose parameters carry "binary_data_size", in input order.
Outputs are written binary when the output asks ("parameters": {"binary_data": true}) or the
request does ("parameters": {"binary_data_output": true}, what tritonclient sends by default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DeployError

# Datatypes of the protocol, by numpy dtype; our artifacts take and give float32 only.
DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
             "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(DeployError):
    """A request the server refuses: `status` is the HTTP status, the message goes in {"error": ...}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model: shape with -1 for the dynamic batch dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class InferRequest:
    """A decoded request: inputs by name, which outputs to return and how."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str]          # names, in the order to return them
    binary: dict[str, bool]     # output name -> write as binary data
    batch: int


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        n = len(body)
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} {header_length[:40]!r} is not an integer") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {n} is outside the body's {len(body)} bytes")
    try:
        doc = json.loads(bytes(body[:n]))
    except UnicodeDecodeError:
        raise ProtocolError("request JSON is not UTF-8 (binary tensor data needs "
                            f"the {HEADER_LENGTH} header)") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"malformed request JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("request JSON must be an object with \"inputs\"")
    return doc, memoryview(body)[n:]


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    p = obj.get("parameters", {})
    if not isinstance(p, dict):
        raise ProtocolError(f"{where}: \"parameters\" must be an object")
    return p


def _shape(t: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"input {name!r}: \"shape\" must be a list of integers")
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input {name!r}: negative dimension in shape {shape}")
    return tuple(shape)


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], max_batch: int) -> None:
    want = spec.shape
    if len(shape) != len(want) or any(w != -1 and w != d for w, d in zip(want, shape)):
        raise ProtocolError(f"input {spec.name!r}: shape {list(shape)}, this model takes {list(want)}"
                            + (" (-1: any batch)" if -1 in want else ""))
    if want and want[0] == -1 and not 1 <= shape[0] <= max_batch:
        raise ProtocolError(f"input {spec.name!r}: batch {shape[0]}, this server takes 1 to {max_batch}")


def _tensor_data(t: dict[str, Any], spec: TensorSpec, shape: tuple[int, ...], binary: memoryview,
                 offset: int) -> tuple[np.ndarray, int]:
    count = int(np.prod(shape, dtype=np.int64))
    size = _params(t, f"input {spec.name!r}").get("binary_data_size")
    if size is not None:
        if "data" in t:
            raise ProtocolError(f"input {spec.name!r}: both \"data\" and binary_data_size given")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"input {spec.name!r}: binary_data_size must be a non-negative integer")
        if size != count * 4:
            raise ProtocolError(f"input {spec.name!r}: binary_data_size {size}, shape {list(shape)} of FP32 "
                                f"needs {count * 4} bytes")
        if offset + size > len(binary):
            raise ProtocolError(f"input {spec.name!r}: binary data ends after {len(binary) - offset} of its "
                                f"{size} bytes")
        a = np.frombuffer(binary[offset:offset + size], dtype="<f4").reshape(shape)
        return a, offset + size
    if "data" not in t:
        raise ProtocolError(f"input {spec.name!r}: no \"data\" and no binary_data_size")
    try:
        a = np.asarray(t["data"], dtype=np.float32)
    except (ValueError, TypeError):
        raise ProtocolError(f"input {spec.name!r}: \"data\" is not a (nested) list of numbers") from None
    if a.size != count:
        raise ProtocolError(f"input {spec.name!r}: {a.size} values in \"data\", shape {list(shape)} needs {count}")
    return a.reshape(shape), offset


def decode_request(body: bytes, header_length: str | None, inputs: list[TensorSpec],
                   outputs: list[TensorSpec], max_batch: int) -> InferRequest:
    """Parse and check an infer request against the model's specs (see the module docstring)."""
    doc, binary = _header(body, header_length)
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("\"id\" must be a string")
    params = _params(doc, "request")
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors):
        raise ProtocolError("\"inputs\" must be a list of tensor objects")
    specs = {s.name: s for s in inputs}
    got: dict[str, np.ndarray] = {}
    offset = 0
    for t in tensors:
        name = t.get("name")
        if name not in specs:
            raise ProtocolError(f"unknown input {name!r}: this model takes {', '.join(map(repr, specs))}")
        if name in got:
            raise ProtocolError(f"input {name!r} given twice")
        spec = specs[name]
        if t.get("datatype") != spec.datatype:
            raise ProtocolError(f"input {name!r}: datatype {t.get('datatype')!r}, this model takes {spec.datatype}")
        shape = _shape(t, name)
        _check_shape(spec, shape, max_batch)
        got[name], offset = _tensor_data(t, spec, shape, binary, offset)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data after the last input's")
    missing = [n for n in specs if n not in got]
    if missing:
        raise ProtocolError(f"missing input {missing[0]!r}")
    batches = {a.shape[0] for a in got.values() if a.ndim}
    if len(batches) > 1:
        raise ProtocolError(f"inputs disagree on the batch size: {sorted(batches)}")
    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise ProtocolError("binary_data_output must be true or false")
    out_names = [o.name for o in outputs]
    wanted = doc.get("outputs")
    binary_out: dict[str, bool] = {}
    if wanted is None:
        names = out_names
        binary_out = {n: default_binary for n in names}
    else:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
            raise ProtocolError("\"outputs\" must be a list of objects")
        names = []
        for o in wanted:
            n = o.get("name")
            if n not in out_names:
                raise ProtocolError(f"unknown output {n!r}: this model gives {', '.join(map(repr, out_names))}")
            p = _params(o, f"output {n!r}")
            if "classification" in p:
                raise ProtocolError(f"output {n!r}: the classification extension is not supported")
            b = p.get("binary_data", default_binary)
            if not isinstance(b, bool):
                raise ProtocolError(f"output {n!r}: binary_data must be true or false")
            names.append(n)
            binary_out[n] = b
    return InferRequest(id=rid, inputs=got, outputs=names, binary=binary_out,
                        batch=next(iter(batches)) if batches else 1)


def encode_response(model: str, version: str, request: InferRequest, results: dict[str, np.ndarray],
                    specs: dict[str, TensorSpec]) -> tuple[bytes, int | None]:
    """(body, JSON header length or None when the whole body is JSON)."""
    outs, chunks = [], []
    for name in request.outputs:
        a = np.ascontiguousarray(results[name], dtype="<f4")
        entry: dict[str, Any] = {"name": name, "datatype": specs[name].datatype, "shape": list(a.shape)}
        if request.binary.get(name):
            raw = a.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = a.ravel().tolist()
        outs.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outs}
    if request.id is not None:
        doc["id"] = request.id
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
