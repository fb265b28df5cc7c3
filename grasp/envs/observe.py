"""What a pixel world model sees of a task: stacks of the last few rendered frames."""

from __future__ import annotations

import numpy as np

from grasp.envs.base import Task


def frame(task: Task, size: int) -> np.ndarray:
    """The task's current frame, channels first: (3, size, size) uint8."""
    return np.ascontiguousarray(task.render(size).transpose(2, 0, 1))


class FrameHistory:
    """The last `history` frames of one task, stacked on channels oldest first: (history * 3,
    S, S) uint8, the current frame in the last 3 channels. A new episode repeats its first frame,
    as the training windows do (grasp.train.trainer.Episodes)."""

    def __init__(self, size: int, history: int) -> None:
        if history < 1:
            raise ValueError(f"world_model.history={history}: allowed an integer >= 1")
        self.size, self.history = int(size), int(history)
        self.frames: list[np.ndarray] = []

    def reset(self, task: Task) -> np.ndarray:
        self.frames = [frame(task, self.size)] * self.history
        return np.concatenate(self.frames)

    def push(self, task: Task) -> np.ndarray:
        self.frames = [*self.frames[1:], frame(task, self.size)]
        return np.concatenate(self.frames)


def goal_observation(task: Task, goal: np.ndarray, size: int, history: int) -> np.ndarray:
    """A goal state as a pixel model sees it: its frame repeated `history` times (the goal at
    rest). Puts the simulator in the goal state to render it and then back where it was."""
    before = task.get_state()
    try:
        task.reset(goal)
        image = frame(task, size)
    finally:
        task.reset(before)
    return np.concatenate([image] * int(history))
