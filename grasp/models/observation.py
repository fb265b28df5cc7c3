"""How a world model sees a task, supplied by the model itself (`WorldModel.observer()`): what
its `encode` takes from the training data and from the simulators of the MPC loop. The trainer
and the evaluation never ask what kind of observation a model reads; they ask its observer.

An observer is made per batch of episodes (it may keep per-episode state, such as the last frames).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch


class Observer(Protocol):
    """The observation contract. `envs` is a grasp.envs.vector.TaskVector (its `tasks` list)."""

    #: the frame size the model's dataset must be rendered at (None: the task's state vectors suffice)
    frame_size: int | None

    def from_dataset(self, states: torch.Tensor, frames: torch.Tensor | None, episode: torch.Tensor,
                     time: torch.Tensor) -> torch.Tensor:
        """Observations at (episode, time) index tensors of equal shape, from a dataset's states
        (N, L+1, D) and frames (N, L+1, 3, S, S) or None."""

    def goals(self, envs, goals: np.ndarray) -> np.ndarray:
        """The goals' observations (B, ...)."""

    def reset(self, envs, states: np.ndarray) -> np.ndarray:
        """Observations (B, ...) at the start of the episodes (the simulators just reset to `states`)."""

    def step(self, rows: np.ndarray, envs, states: np.ndarray) -> np.ndarray:
        """Observations of episodes `rows` after a step that brought them to `states`."""

    def current_frame(self, observation: np.ndarray) -> np.ndarray | None:
        """The frame (3, S, S) an observation shows for pictures, or None when it shows none."""


class StateObserver:
    """The task's state vector, as the dataset and the simulator hold it."""

    frame_size = None

    def from_dataset(self, states, frames, episode, time):
        return states[episode, time]

    def goals(self, envs, goals):
        return np.asarray(goals, dtype=np.float32)

    def reset(self, envs, states):
        return np.asarray(states, dtype=np.float32).copy()

    def step(self, rows, envs, states):
        return np.asarray(states, dtype=np.float32)

    def current_frame(self, observation):
        return None


class FrameStackObserver:
    """The last `history` rendered frames of each episode, stacked on channels oldest first
    (goal markers hidden); goals are their goal state's frame repeated. In the dataset an
    episode's first frame is repeated before it starts, as in the simulator after a reset."""

    def __init__(self, frame_size: int, history: int) -> None:
        self.frame_size, self.history = int(frame_size), int(history)
        self.histories: list = []

    def from_dataset(self, states, frames, episode, time):
        if frames is None:
            raise ValueError(f"world_model reads frames but the dataset has no frames: collect one with "
                             f"frames of world_model.frame_size={self.frame_size}")
        back = torch.arange(1 - self.history, 1, device=time.device)  # oldest frame first
        stack = frames[episode[..., None], (time[..., None] + back).clamp_min(0)]
        return stack.flatten(-4, -3)  # (..., history, 3, S, S) -> (..., history * 3, S, S)

    def goals(self, envs, goals):
        from grasp.envs.observe import goal_observation

        return np.stack([goal_observation(task, goal, self.frame_size, self.history)
                         for task, goal in zip(envs.tasks, goals)])

    def reset(self, envs, states):
        from grasp.envs.observe import FrameHistory

        self.histories = [FrameHistory(self.frame_size, self.history) for _ in envs.tasks]
        return np.stack([frames.reset(task) for frames, task in zip(self.histories, envs.tasks)])

    def step(self, rows: Sequence[int], envs, states):
        return np.stack([self.histories[i].push(envs.tasks[i]) for i in rows])

    def current_frame(self, observation):
        return observation[-3:]
