"""Seeded integer streams defined in integers (SplitMix64), identical in every library version.

The generated datasets (:mod:`.textures`, :mod:`.fonts`) draw from these rather than from
torch's or numpy's generators, whose streams are not promised to stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

__all__ = ["keyed_stream", "splitmix64"]

_MASK64 = (1 << 64) - 1


def splitmix64(seed: int) -> Iterator[int]:
    """SplitMix64: 64-bit integers from ``seed``, a tiny generator defined in integers."""
    state = seed & _MASK64
    while True:
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        yield z ^ (z >> 31)


def keyed_stream(*key: object) -> Iterator[int]:
    """A SplitMix64 stream seeded by the SHA-256 of ``":".join(key)``: one independent
    stream per key, e.g. per (seed, class), so changing one class leaves the others alone."""
    digest = hashlib.sha256(":".join(str(k) for k in key).encode()).digest()
    return splitmix64(int.from_bytes(digest[:8], "little"))
