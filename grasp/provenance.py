"""Where a result came from: the code (git commit and whether the tree had uncommitted changes),
the versions of the packages that decide the numbers, the device and the checkpoint's hash. Every
results row and W&B run carries them, so a number can be traced to what made it."""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

#: the distributions whose versions decide a result (simulation, model, composition, logging)
PACKAGES = ("grasp-wm", "torch", "mujoco", "hydra-core", "wandb")


def _git(*args: str) -> str | None:
    """git in the source checkout; None for an installed package (whatever repository its
    site-packages may sit in is not its source)."""
    from grasp.config import SOURCE_ROOT

    if SOURCE_ROOT is None:
        return None
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@lru_cache(maxsize=1)
def code_version() -> dict[str, str | bool]:
    """git_commit ('' outside a git checkout, e.g. an installed wheel: then `versions` names the
    package's) and git_dirty (tracked files differ from the commit)."""
    commit = _git("rev-parse", "HEAD") or ""
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else False
    return {"git_commit": commit, "git_dirty": dirty}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=1)
def versions() -> str:
    """'grasp-wm=0.1.0 torch=2.13.0 ...': one string, so it is one column and one W&B key."""
    return " ".join(f"{name}={_version(name)}" for name in PACKAGES)


def file_sha256(path: str | Path | None) -> str:
    """The file's SHA-256 in hex ('' when there is no file)."""
    if path is None or not Path(path).is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp(device: torch.device | str, checkpoint: str | Path | None) -> dict[str, str | bool]:
    """The provenance columns of a results row (grasp.eval.metrics.PROVENANCE_COLUMNS)."""
    return {**code_version(), "versions": versions(), "device": str(device), "checkpoint_sha256": file_sha256(checkpoint)}
