"""Small shared helpers: devices, seeding, atomic file writes, a section stopwatch."""

from __future__ import annotations

import functools
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def is_device_name(name: object) -> bool:
    """The run's `device` values: auto, cpu, cuda or cuda:N."""
    return isinstance(name, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is not None


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when present, else cpu; asking for a CUDA device torch does not see is an error."""
    if not is_device_name(name):
        raise RuntimeError(f"device={name!r}: allowed auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name} was requested but torch sees no CUDA device; use device=auto or device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={name}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def use_device(device: torch.device) -> torch.device:
    """Process-wide settings for computing on `device`: on CUDA, fp32 matrix products in TF32
    (tensor cores; about 1e-3 relative precision, which planning tolerates). CPU: nothing."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


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


def compile_world_model(model: torch.nn.Module, mode: str) -> None:
    """torch.compile the model's `step`, the one call every planner and rollout goes through.
    Shapes are dynamic (batch x horizon varies between lifted calls and serial rollouts), and
    planners call it with and without grad, so allow more recompiles than torch's default
    (`recompile_limit`, called `cache_size_limit` before torch 2.6)."""
    import torch._dynamo

    config = torch._dynamo.config
    key = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, key, max(getattr(config, key), 32))
    model.step = torch.compile(model.step, mode=mode, dynamic=True)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Compute with `threads` torch threads inside the block (None: leave the count as it is),
    and restore the count after it: a launcher's worker process runs one job after another."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. run seed and episode index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interrupted write leaves the previous good file (or none). The file gets the mode a
    plain open() would give it (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from a group sharing the directory
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Stopwatch:
    """Wall time summed per named section (`with watch("plan"): ...`), so a run can say where its
    time went; sections may repeat and nest (a nested section's time also counts in its parent)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, section: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[section] += time.perf_counter() - start
