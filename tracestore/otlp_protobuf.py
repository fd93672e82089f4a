"""OTLP protobuf bodies -> ExportTraceServiceRequest, for both receivers.

The protobuf runtime refuses messages nested deeper than its recursion limit (about 31
levels of attribute values). A span with a deeply nested attribute is hostile but not
invalid: on that one error the body is re-encoded with values nested deeper than
``MAX_VALUE_DEPTH`` replaced by a marker, and the rest is kept.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_VALUE_DEPTH = 24


class OtlpProtobufError(ValueError):
    """The body is not a valid ExportTraceServiceRequest."""


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        if "MaxDepth" not in str(exc):
            raise OtlpProtobufError(
                f"body is not a valid ExportTraceServiceRequest: {exc}"
            ) from None
    # Too deep for upb: cap the nesting of attribute values, keep the rest.
    try:
        pruned = _prune(body, ExportTraceServiceRequest.DESCRIPTOR, 0)
        return ExportTraceServiceRequest.FromString(pruned)
    except (DecodeError, IndexError, ValueError):
        raise OtlpProtobufError("body is not a valid ExportTraceServiceRequest") from None


_TOO_DEEP = AnyValue(string_value="[nesting too deep]").SerializeToString()


def _prune(data: bytes, descriptor: Any, depth: int) -> bytes:
    """Re-encode a message with AnyValues nested deeper than ``MAX_VALUE_DEPTH`` replaced
    by a marker string. Recursion stops at that depth, so it is bounded."""
    out = bytearray()
    pos, size = 0, len(data)
    while pos < size:
        tag, value_at = _varint(data, pos)
        wire_type = tag & 7
        if wire_type == 0:
            _, end = _varint(data, value_at)
        elif wire_type == 1:
            end = value_at + 8
        elif wire_type == 5:
            end = value_at + 4
        elif wire_type == 2:
            length, start = _varint(data, value_at)
            end = start + length
            field = descriptor.fields_by_number.get(tag >> 3)
            if end <= size and field is not None and field.message_type is not None:
                sub = field.message_type
                if sub is AnyValue.DESCRIPTOR:
                    if depth >= MAX_VALUE_DEPTH:
                        payload = _TOO_DEEP
                    else:
                        payload = _prune(data[start:end], sub, depth + 1)
                else:
                    payload = _prune(data[start:end], sub, depth)
                out += data[pos:value_at]
                out += _encode_varint(len(payload))
                out += payload
                pos = end
                continue
        else:
            raise ValueError("unsupported wire type")
        if end > size:
            raise ValueError("truncated field")
        out += data[pos:end]
        pos = end
    return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
