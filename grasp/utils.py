"""Small shared helpers: devices, seeding, atomic file writes, a section stopwatch."""

from __future__ import annotations

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
