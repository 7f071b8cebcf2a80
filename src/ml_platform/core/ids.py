"""Opaque identifiers: a short readable prefix and a random, time-ordered body."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 26 chars: 48-bit milliseconds then 80 random bits (ULID layout).

    Ids sort by creation time, which keeps B-tree inserts append-mostly.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def is_well_formed(candidate: str, prefix: str) -> bool:
    """Whether ``candidate`` could be an id we issued (cheap check before touching a store)."""
    body = candidate.removeprefix(prefix + "_")
    return (
        len(candidate) == len(prefix) + 27
        and body != candidate
        and all(ch in _ALPHABET for ch in body)
    )
