"""The goal-conditioned task interface every environment implements.

A task owns one simulator. States are flat float64 numpy vectors (the planner-facing,
unnormalised state); goals are states too, of which only `goal_dims` matter for success.
The evaluator runs one Task per episode and steps them as a vector (grasp.envs.vector.TaskVector).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Task(ABC):
    """One simulator instance of a goal-conditioned task."""

    #: name used in results and W&B tags
    name: str = "task"
    state_dim: int
    action_dim: int
    #: indices of the state entries that the goal and the success test look at
    goal_dims: tuple[int, ...]
    #: distance under which an episode counts as solved (in goal_dims units)
    success_threshold: float
    #: simulator steps per model step (the paper's frameskip)
    frame_skip: int = 1
    #: the exploration policy `data.policy=auto` picks for this task
    default_data_policy: str = "colored"
    #: bump when the state layout or the dynamics change: the caches of datasets, world models and
    #: start/goal pairs are keyed by it, so older ones are not reused
    version: int = 1

    @property
    def env_steps_per_model_step(self) -> float:
        """How many steps of the environment the task reproduces one model step spans, so horizons
        can be reported in that env's steps as papers do (Push-T at frame_skip=100: 5)."""
        return 1.0

    @property
    def action_low(self) -> np.ndarray:
        return -np.ones(self.action_dim)

    @property
    def action_high(self) -> np.ndarray:
        return np.ones(self.action_dim)

    @abstractmethod
    def reset(self, state: np.ndarray) -> np.ndarray:
        """Put the simulator in `state` and return the state it really holds."""

    @abstractmethod
    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply one (clipped) action for `frame_skip` simulator steps; return the new state."""

    @abstractmethod
    def get_state(self) -> np.ndarray:
        """The current state vector."""

    @abstractmethod
    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random valid state (used for data collection starts and random goals)."""

    @abstractmethod
    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A (start state, goal state) pair for evaluation, drawn from `rng`."""

    @abstractmethod
    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        """An RGB frame (size, size, 3) uint8 of the current state. show_goal=False leaves out
        the goal marker (grasp.envs.rendering.GOAL_GROUP): pixel models observe such frames,
        so that no observation gives the goal away."""

    def set_goal(self, goal: np.ndarray) -> None:
        """Show `goal` in rendered frames (a marker); tasks without one ignore it."""

    @property
    def has_scripted_policy(self) -> bool:
        return type(self).exploration_action is not Task.exploration_action

    def exploration_action(self, rng: np.random.Generator, state: np.ndarray) -> np.ndarray:
        """One action of the task's scripted data policy (`data.policy=scripted`), for tasks
        where random actions teach the model nothing (e.g. Push-T: push the block)."""
        raise NotImplementedError(f"env {self.name!r} has no scripted exploration policy: "
                                  f"use data.policy=uniform or data.policy=colored")

    def distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Euclidean distance over goal_dims; works on (..., D) batches."""
        idx = list(self.goal_dims)
        return np.linalg.norm(np.asarray(state)[..., idx] - np.asarray(goal)[..., idx], axis=-1)

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.distance(state, goal) < self.success_threshold

    def close(self) -> None:
        """Free renderer resources."""
