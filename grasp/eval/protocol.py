"""Start/goal pairs drawn from seeds, so every planner sees the same problems."""

from __future__ import annotations

import numpy as np

from grasp.envs.base import Task
from grasp.utils import derive_seed


def episode_seed(seed: int, episode: int) -> int:
    return derive_seed(seed, episode)


def start_goal_pairs(task: Task, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(starts (N, D), goals (N, D), per-episode seeds). Episode i depends only on (seed, i),
    so a single episode can be replayed and more episodes extend the same list."""
    seeds = [episode_seed(seed, i) for i in range(episodes)]
    pairs = [task.sample_start_goal(np.random.default_rng(s)) for s in seeds]
    starts = np.stack([p[0] for p in pairs])
    goals = np.stack([p[1] for p in pairs])
    return starts, goals, seeds
