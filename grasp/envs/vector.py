"""Simulators of one task stepped as a vector: the evaluator's side of batched planning.

MuJoCo steps one model at a time on the CPU, so, as in gymnasium's SyncVectorEnv, the loop over
simulators lives here, and the MPC step works on (n, ...) arrays of states, actions and goals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from grasp.envs.base import Task


class TaskVector:
    """n simulators of one task configuration, one per episode. Rows are episode indices; `step`
    moves only the rows given (episodes that have finished stay where they are)."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        if len(tasks) == 0:
            raise ValueError("TaskVector needs at least one task")
        names = {task.name for task in tasks}
        if len(names) > 1:
            raise ValueError(f"TaskVector holds simulators of one task, got {sorted(names)}")
        self.tasks = list(tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def spec(self) -> Task:
        """The task whose config (goal dims, thresholds) every simulator of the vector shares."""
        return self.tasks[0]

    def reset(self, states: np.ndarray) -> np.ndarray:
        """Put simulator i in states[i]; return the (n, D) states they really hold."""
        if len(states) != len(self):
            raise ValueError(f"need one start state per simulator, got {len(states)} for {len(self)}")
        return np.stack([task.reset(state) for task, state in zip(self.tasks, states)])

    def step(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Simulator rows[k] executes the model step actions[k]; return their new states (len(rows), D)."""
        return self.step_chunk(rows, actions)[:, -1]

    def step_chunk(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Simulator rows[k] executes the model step actions[k] (its action_chunk env actions in
        order); return the state after every env step (len(rows), action_chunk, D)."""
        if len(rows) != len(actions):
            raise ValueError(f"need one action per stepped row, got {len(actions)} for {len(rows)} rows")
        return np.stack([self.tasks[i].step_chunk(action) for i, action in zip(rows, actions)])

    def success(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(..., D) states and goals -> (...) bool, by the task's own success rule."""
        return np.asarray(self.spec.success(states, goals), dtype=bool)

    def distance(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        return np.asarray(self.spec.distance(states, goals), dtype=np.float64)
