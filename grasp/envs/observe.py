"""What a pixel world model sees of a task: stacks of the last few rendered frames.

Every frame here is rendered with show_goal=False: an observation that showed the goal marker
would hand the model the goal in every step (and the goal observation would show it twice).
"""

from __future__ import annotations

import numpy as np

from grasp.envs.base import Task


def frame(task: Task, size: int) -> np.ndarray:
    """The task's current frame without the goal marker, channels first: (3, size, size) uint8."""
    return np.ascontiguousarray(task.render(size, show_goal=False).transpose(2, 0, 1))


def env_step_frames(task: Task, start: np.ndarray, actions, size: int) -> np.ndarray:
    """Frames after every env step of an executed episode, replayed from its start in `task`
    (the simulator is deterministic): (steps * action_chunk, 3, S, S). With stacked actions a
    model step spans several env steps, and a video of model steps alone would skip them."""
    task.reset(np.asarray(start, dtype=np.float64))
    frames = []
    for action in actions:
        for sub in task.split_action(action):
            task.env_step(sub)
            frames.append(frame(task, size))
    return np.stack(frames) if frames else np.zeros((0, 3, size, size), np.uint8)


class FrameHistory:
    """The last `history` frames of one task, stacked on channels oldest first: (history * 3,
    S, S) uint8, the current frame in the last 3 channels. A new episode repeats its first frame,
    as the training windows do (grasp.train.trainer.Episodes)."""

    def __init__(self, size: int, history: int) -> None:
        if int(history) != history or history < 1:
            raise ValueError(f"world_model.history={history}: allowed an integer >= 1")
        if int(size) != size or size < 1:
            raise ValueError(f"world_model.frame_size={size}: allowed an integer >= 1")
        self.size, self.history = int(size), int(history)
        self.frames: list[np.ndarray] = []

    def reset(self, task: Task) -> np.ndarray:
        """Start an episode at the task's current state."""
        first = frame(task, self.size)
        self.frames = [first.copy() for _ in range(self.history)]
        return np.concatenate(self.frames)

    def push(self, task: Task) -> np.ndarray:
        """Add the task's current frame (after a step), dropping the oldest."""
        if not self.frames:
            raise RuntimeError("FrameHistory.push before reset: call reset(task) at the start of an episode")
        self.frames = [*self.frames[1:], frame(task, self.size)]
        return np.concatenate(self.frames)


def goal_observation(task: Task, goal_state: np.ndarray, size: int, history: int) -> np.ndarray:
    """A goal state as a pixel model sees it: its frame repeated `history` times (the goal at
    rest), (history * 3, size, size) uint8. It puts the simulator in `goal_state` to render it,
    then restores the state it held before (via task.reset, so per-episode extras that reset
    clears, such as a scripted policy's plan, are not kept)."""
    before = task.get_state()
    try:
        task.reset(np.asarray(goal_state, dtype=np.float64))
        image = frame(task, size)
    finally:
        task.reset(before)
    return np.concatenate([image] * int(history))
