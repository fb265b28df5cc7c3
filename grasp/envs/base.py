"""The goal-conditioned task interface every environment implements.

A task owns one simulator. States are flat float64 numpy vectors (the planner-facing,
unnormalised state); goals are states too, of which only `goal_dims` matter for success.
The evaluator runs one Task per episode and steps them as a vector (grasp.envs.vector.TaskVector).

Stacked actions (DINO-WM's frameskip). A model step spans `action_chunk` = k env steps: its action
is k env actions stacked into one vector of k * env_action_dim entries, laid out
[a0x, a0y, a1x, a1y, ...], and `step` executes them one per env step, each for `frame_skip`
simulator steps. A task implements `env_step` (one env action) and the rest follows here; with
k = 1 (the default) a model step is one env step, as before stacking existed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Task(ABC):
    """One simulator instance of a goal-conditioned task."""

    #: name used in results and W&B tags
    name: str = "task"
    state_dim: int
    #: entries of one env action (a model step's action has action_chunk times as many)
    env_action_dim: int
    #: indices of the state entries that the goal and the success test look at
    goal_dims: tuple[int, ...]
    #: distance under which an episode counts as solved (in goal_dims units)
    success_threshold: float
    #: simulator steps per env step (each env action is held this long)
    frame_skip: int = 1
    #: env steps per model step: that many env actions are stacked into one model action
    action_chunk: int = 1
    #: the exploration policy `data.policy=auto` picks for this task
    default_data_policy: str = "colored"
    #: bump when the state layout or the dynamics change: the caches of datasets, world models and
    #: start/goal pairs are keyed by it, so older ones are not reused
    version: int = 1

    def set_action_chunk(self, action_chunk: int) -> None:
        """Constructors call this with their `action_chunk` argument (env.action_chunk)."""
        if isinstance(action_chunk, bool) or int(action_chunk) != action_chunk or action_chunk < 1:
            raise ValueError(f"env.action_chunk={action_chunk!r} must be an integer >= 1 "
                             "(env actions stacked into one model step; 1 = no stacking)")
        self.action_chunk = int(action_chunk)

    @property
    def action_dim(self) -> int:
        """Entries of one model step's action: action_chunk stacked env actions."""
        return self.env_action_dim * self.action_chunk

    @property
    def env_steps_per_action(self) -> float:
        """How many steps of the environment the task reproduces one env action spans, so horizons
        can be reported in that env's steps as papers do (Push-T at frame_skip=100: 5)."""
        return 1.0

    @property
    def env_steps_per_model_step(self) -> float:
        return self.action_chunk * self.env_steps_per_action

    @property
    def env_action_low(self) -> np.ndarray:
        return -np.ones(self.env_action_dim)

    @property
    def env_action_high(self) -> np.ndarray:
        return np.ones(self.env_action_dim)

    @property
    def action_low(self) -> np.ndarray:
        """Bounds of a model step's action: the env action's, tiled over the chunk."""
        return np.tile(self.env_action_low, self.action_chunk)

    @property
    def action_high(self) -> np.ndarray:
        return np.tile(self.env_action_high, self.action_chunk)

    def split_action(self, action: np.ndarray) -> np.ndarray:
        """A model step's action (k * A,) as its k env actions (k, A), in execution order."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f"{self.name}: a model step's action has shape ({self.action_dim},) "
                             f"(action_chunk={self.action_chunk} x {self.env_action_dim}), got {action.shape}")
        return action.reshape(self.action_chunk, self.env_action_dim)

    def step_chunk(self, action: np.ndarray) -> np.ndarray:
        """Execute one model step's k env actions in order; return the state after each (k, D)."""
        return np.stack([self.env_step(sub) for sub in self.split_action(action)])

    def step(self, action: np.ndarray) -> np.ndarray:
        """One model step (k env steps); return the new state."""
        return self.step_chunk(action)[-1]

    @abstractmethod
    def reset(self, state: np.ndarray) -> np.ndarray:
        """Put the simulator in `state` and return the state it really holds."""

    @abstractmethod
    def env_step(self, action: np.ndarray) -> np.ndarray:
        """Apply one (clipped) env action (env_action_dim,) for `frame_skip` simulator steps;
        return the new state."""

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
        """One env action of the task's scripted data policy (`data.policy=scripted`), for tasks
        where random actions teach the model nothing (e.g. Push-T: push the block). It is asked
        once per env step, so stacking actions leaves the policy's behaviour as it is."""
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
