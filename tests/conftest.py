"""Shared fixtures: Hydra composition of the real conf/ tree and tiny run sizes."""

from __future__ import annotations

import copy
import functools
import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import grasp  # noqa: F401  (sets MUJOCO_GL before anything imports mujoco)
from grasp.config import CONF_DIR, REPO_ROOT

sys.path.insert(0, str(Path(__file__).parent))

# Sizes that exercise every stage in seconds. Each planner yaml has `iterations`.
TINY = [
    "data.episodes=20", "data.episode_len=20", "train.steps=40", "train.eval_every=20", "train.batch_size=64",
    "train.rollout_len=5", "eval.episodes=2", "eval.max_steps=6", "horizon=6", "world_model.hidden_dim=32",
    "world_model.depth=2", "planner.iterations=25", "progress=false", "logger.wandb.mode=disabled",
]


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=list(overrides or []), return_hydra_config=return_hydra_config)


@functools.lru_cache(maxsize=None)
def _planner_node(name: str):
    return compose_config([f"planner={name}"]).planner


def planner_config(name: str):
    """conf/planner/<name>.yaml as Hydra composes it (a copy; `horizon` left to the caller)."""
    return copy.deepcopy(_planner_node(name))


@pytest.fixture
def tiny_cfg(tmp_path):
    """A composed config at tiny sizes whose every path lies under tmp_path."""

    def make(*extra: str):
        return compose_config(TINY + [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", *extra])

    return make


def run_cli(args: list[str], cwd: Path, timeout: int = 300):
    """`python -m grasp.run ...` in a subprocess, as a user would launch it."""
    import subprocess

    env = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "grasp.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


__all__ = ["TINY", "compose_config", "planner_config", "run_cli", "REPO_ROOT"]
