"""Numeric precision: the names of the `precision` knobs, the autocast dtype each stands for, and
whether this machine's CPU has native bf16 (what `auto` asks). A leaf module: planners, training
and the runner read it, and it reads nothing of grasp."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


#: the run's `precision` -> the autocast dtype of planning (None: plain fp32). No fp16: its
#: gradients would need loss scaling (a GradScaler) that the planners' many small optimisations
#: do not have; bf16 keeps fp32's range.
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def precision_name(dtype: torch.dtype | None) -> str:
    """The `precision` an autocast dtype stands for (fp32 for none)."""
    return next(name for name, value in AUTOCAST_DTYPES.items() if value == dtype)


#: the run's `precision` values: auto picks per planner and device (autocast_dtype)
PRECISIONS = (*AUTOCAST_DTYPES, "auto")
#: /proc/cpuinfo flags of cores that multiply bf16 matrices in hardware (x86 AVX512-BF16 and
#: AMX-BF16; Arm's BF16 extension)
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=None)
def native_bf16_cpu(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU multiplies bf16 matrices in hardware, read from the flags of
    `cpuinfo` once per process (false where the file is missing: bf16 emulated in software is
    slower than fp32)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return bool(flags & BF16_CPU_FLAGS)


def autocast_dtype(precision: str, device: torch.device, wide_calls: bool) -> torch.dtype | None:
    """The autocast dtype of a planner's optimisation for the run's `precision`. `auto` is bf16
    only for a planner whose model calls are wide batched forward passes (`wide_calls`: the
    samplers) on a CPU with native bf16 (docs/benchmarks/README.md measured CEM 2.1x faster);
    everything else stays fp32: small serial calls gain nothing and pay for the casts, and on a
    GPU such calls cost their launch."""
    if precision == "auto":
        precision = "bf16" if wide_calls and device.type == "cpu" and native_bf16_cpu() else "fp32"
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision={precision!r}: allowed {list(PRECISIONS)}")
    return AUTOCAST_DTYPES[precision]
