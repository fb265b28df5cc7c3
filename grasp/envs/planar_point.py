"""State handling shared by the tasks whose MuJoCo model is one point on two slide joints
(Wall, PointMaze): the state (x, y, vx, vy) is exactly (qpos, qvel)."""

from __future__ import annotations

import mujoco
import numpy as np


class PlanarPointState:
    """Mixin giving a Task `reset` and `get_state` for a (qpos, qvel) = (2, 2) model held in
    `self.model` / `self.data`."""

    model: mujoco.MjModel
    data: mujoco.MjData

    def reset(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = state[:2]
        self.data.qvel[:] = state[2:4]
        mujoco.mj_forward(self.model, self.data)
        return self.get_state()

    def get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)
