"""Shared fixtures: Hydra composition of the real conf/ tree and tiny run sizes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import grasp  # noqa: F401  (sets MUJOCO_GL before anything imports mujoco)
from grasp.config import REPO_ROOT, compose
from grasp.job import resolve
from grasp.planners import planner_config

sys.path.insert(0, str(Path(__file__).parent))

# Sizes that exercise every stage in seconds. Each planner yaml has `iterations`.
TINY = [
    "data.episodes=20", "data.episode_len=20", "train.steps=40", "train.eval_every=20", "train.batch_size=64",
    "train.rollout_len=5", "eval.episodes=2", "eval.max_steps=6", "horizon=6", "world_model.hidden_dim=32",
    "world_model.depth=2", "planner.iterations=25", "progress=false", "logger.wandb.mode=disabled",
]


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False):
    return compose(overrides or [], return_hydra_config=return_hydra_config)


def tiny_training(episodes: int, episode_len: int, **train):
    """A small Wall MLP's config, `episodes` colored exploration episodes and its train section
    with `train` merged in: real training in a second."""
    import hydra
    from omegaconf import OmegaConf

    from grasp.train.dataset import collect

    cfg = compose_config(["world_model.hidden_dim=32", "world_model.depth=2"])
    task = hydra.utils.instantiate(cfg.env)
    try:
        data = collect(task, episodes=episodes, episode_len=episode_len, policy="colored", correlation=0.8, seed=0,
                       progress=False)
    finally:
        task.close()
    return cfg, data, OmegaConf.merge(cfg.train, train)


def resolved(cfg):
    """grasp.job.resolve of a composed config, its simulator closed: the job's names and keys."""
    job = resolve(cfg)
    job.close()
    return job


@pytest.fixture(autouse=True)
def own_wandb_service():
    """wandb.init in this process puts its service's address in WANDB_SERVICE, which subprocesses
    inherit and attach to: a killed subprocess's run then stays registered there and a resumed one
    is refused ("run ID is in use"). Every test's subprocesses start their own service instead."""
    os.environ.pop("WANDB_SERVICE", None)
    yield


@pytest.fixture
def tiny_cfg(tmp_path):
    """A composed config at tiny sizes whose every path lies under tmp_path."""

    def make(*extra: str):
        return compose_config(TINY + [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", *extra])

    return make


def run_cli(args: list[str], cwd: Path, timeout: int = 300, unset: tuple[str, ...] = ()):
    """`python -m grasp.run ...` in a subprocess, as a user would launch it (without the
    environment variables in `unset`)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update({"WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"})
    return subprocess.run([sys.executable, "-m", "grasp.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


__all__ = ["TINY", "compose_config", "planner_config", "resolved", "run_cli", "tiny_training", "REPO_ROOT"]
