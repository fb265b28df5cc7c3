"""Per-problem random streams: the noise a planner draws for problem b depends only on b's key and
on how many draws came before, never on which other problems share the batch. So planning a batch
gives each problem the plan it would get alone, and MPC dropping finished episodes changes
nothing for the others.

Draws are counter-based: element e of the c-th draw of the row with key k is a hash of (k, c, e)
turned into a standard normal (Box-Muller), computed with integer tensor ops on the planner's
device, so the numbers do not depend on the device either.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, factor: int) -> torch.Tensor:
    """x * factor mod 2^32 for x < 2^32, in 16-bit halves so no int64 product overflows."""
    return ((x & 0xFFFF) * factor + ((((x >> 16) * factor) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (int64 tensors holding values < 2^32)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _combine(first: torch.Tensor, *rest: torch.Tensor | int) -> torch.Tensor:
    """Hash of 32-bit integers (tensors broadcast together, or Python ints: a counter or salt
    then needs no host-to-device copy)."""
    h = torch.zeros((), dtype=torch.int64, device=first.device)
    for part in (first, *rest):
        h = _mix32(_mul32(h, 0x9E3779B1) + (part & _MASK32))
    return h


class NoiseStreams:
    """One stream of N(0, 1) draws per problem row. `normal(shape)` needs shape[0] == rows and
    advances every row's stream by one draw."""

    def __init__(self, keys: torch.Tensor, device: torch.device | str | None = None) -> None:
        keys = torch.as_tensor(keys, dtype=torch.int64)
        if keys.ndim != 1:
            raise ValueError(f"NoiseStreams needs a 1-D tensor of keys, got shape {list(keys.shape)}")
        self.keys = keys.to(device if device is not None else keys.device)
        self.draws = 0

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: torch.device | str | None = None) -> "NoiseStreams":
        return cls(torch.tensor([int(s) % 2**62 for s in seeds], dtype=torch.int64), device)

    @property
    def rows(self) -> int:
        return int(self.keys.shape[0])

    def _halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys & _MASK32, (self.keys >> 32) & _MASK32

    def _derived(self, salt: torch.Tensor | int, low: torch.Tensor, high: torch.Tensor) -> "NoiseStreams":
        """Fresh streams keyed by hashes of (key halves, salt): independent of the parents' streams."""
        return NoiseStreams((_combine(low, salt) << 31) ^ _combine(high, salt, low), self.keys.device)

    def fork(self, salt: int) -> "NoiseStreams":
        """Independent streams for a new use of the same problems (e.g. the k-th MPC plan call)."""
        return self._derived(int(salt) & _MASK32, *self._halves())

    def expand(self, copies: int) -> "NoiseStreams":
        """Rows b*copies .. b*copies + copies-1 get their own streams derived from row b's key (one
        per restart), the same whatever the other rows are."""
        low, high = (half.repeat_interleave(copies) for half in self._halves())
        copy = torch.arange(copies, device=self.keys.device).repeat(self.rows)
        streams = self._derived(copy, low, high)
        streams.draws = self.draws
        return streams

    def __getitem__(self, rows) -> "NoiseStreams":
        streams = NoiseStreams(self.keys[rows].reshape(-1), self.keys.device)
        streams.draws = self.draws
        return streams

    def normal(self, shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
        """N(0, 1) floats of `shape` (shape[0] = rows), row b from its own stream."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.rows:
            raise ValueError(f"NoiseStreams of {self.rows} rows cannot fill shape {list(shape)}")
        per_row = math.prod(shape[1:])
        low, high = self._halves()
        row_hash = _combine(low[:, None], high[:, None], self.draws)  # (rows, 1)
        self.draws += 1
        element = torch.arange(per_row, dtype=torch.int64, device=self.keys.device)[None]
        bits_a = _mix32(row_hash ^ element)
        bits_b = _mix32(bits_a ^ 0x5BD1E995)
        # 24-bit uniforms: u1 in (0, 1] keeps the log finite, u2 in [0, 1)
        u1 = ((bits_a >> 8) + 1).float() / 2.0**24
        u2 = (bits_b >> 8).float() / 2.0**24
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        return z.reshape(shape).to(device if device is not None else self.keys.device)
