"""The two protobuf wire-format primitives the hand-written encoders share (``batch_wire``,
``v2_wire``, ``features_wire``): a base-128 varint and a length-delimited field."""

from __future__ import annotations

__all__ = ["delimited", "varint"]

_UINT64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """``value`` as a varint; a negative int64 as its two's complement (10 bytes), as
    protobuf writes ``int64`` fields."""
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` as a length-delimited field (wire type 2): tag, length, payload."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
