"""Reacher and PointMass from the DeepMind Control Suite, as goal-conditioned tasks.

We load the suite's own MJCF models (same masses, gears, damping, 0.02 s timestep) and drive
dm_control's `Physics` directly: `reset(state)` sets joint positions and velocities exactly and
`frame_skip` counts physics steps. The suite's episode logic and rewards are not used; its target
geom is moved by `set_goal` and resized to the success radius, so a frame shows where success is.
"""

from __future__ import annotations

from abc import abstractmethod

import mujoco
import numpy as np
from dm_control.mujoco import Physics
from dm_control.suite import point_mass as suite_point_mass
from dm_control.suite import reacher as suite_reacher

from grasp.envs.base import Task
from grasp.envs.rendering import GOAL_GROUP, FrameRenderer


class DMCTask(Task):
    """What the two suite tasks share: loading, reset/step, goal sampling, the goal marker,
    rendering from the suite's top-down `fixed` camera. Subclasses say what a state is and how
    to sample one."""

    #: the suite module whose `get_model_and_assets()` gives the MJCF model
    suite_module = None
    #: the suite's target geom, used as the goal marker
    target_geom = "target"
    camera = "fixed"

    def __init__(self, frame_skip: int, success_threshold: float, min_goal_distance: float,
                 action_chunk: int = 1) -> None:
        if int(frame_skip) != frame_skip or frame_skip < 1:
            raise ValueError(f"env.frame_skip={frame_skip} must be an integer >= 1")
        if not success_threshold > 0:
            raise ValueError(f"env.success_threshold={success_threshold} must be > 0")
        self.frame_skip = int(frame_skip)
        self.set_action_chunk(action_chunk)
        self.success_threshold = float(success_threshold)
        self.physics = Physics.from_xml_string(*self.suite_module.get_model_and_assets())
        model = self.physics.model
        self._nq, self._nv = model.nq, model.nv
        self._read_model()
        if not 0 <= min_goal_distance < self.max_goal_distance:
            raise ValueError(f"env.min_goal_distance={min_goal_distance} must lie in [0, {self.max_goal_distance:.3f}) "
                             f"(the largest distance two states of this task can have)")
        self.min_goal_distance = float(min_goal_distance)
        self._target = model.name2id(self.target_geom, "geom")
        # The marker sphere is the success region: the goal point is reached inside it.
        model.geom_size[self._target, 0] = self.success_threshold
        model.geom_rbound[self._target] = self.success_threshold
        # Half transparent, so the arm / ball stays visible when it is at the goal.
        model.mat_rgba[model.geom_matid[self._target], 3] = 0.5
        model.geom_group[self._target] = GOAL_GROUP  # so that render(show_goal=False) can leave it out
        self._frames = FrameRenderer(self.physics.model.ptr)
        self.reset(np.zeros(self.state_dim))

    def _read_model(self) -> None:
        """Read what sampling needs (limits, link lengths) from the loaded model."""

    @property
    @abstractmethod
    def max_goal_distance(self) -> float:
        """An upper bound on distance(a, b) over valid states (for the min_goal_distance check)."""

    @property
    def env_action_low(self) -> np.ndarray:
        return self.physics.model.actuator_ctrlrange[:, 0].copy()

    @property
    def env_action_high(self) -> np.ndarray:
        return self.physics.model.actuator_ctrlrange[:, 1].copy()

    # ---- simulation ----------------------------------------------------------------------
    def reset(self, state: np.ndarray) -> np.ndarray:
        """Sets qpos and qvel from the state's first nq + nv entries; the rest is derived."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.state_dim,):
            raise ValueError(f"{self.name}: a state has shape ({self.state_dim},), got {state.shape}")
        # reset_context clears controls and solver warm-starts, then recomputes kinematics,
        # so a state determines what follows.
        with self.physics.reset_context():
            self.physics.data.qpos[:] = state[:self._nq]
            self.physics.data.qvel[:] = state[self._nq:self._nq + self._nv]
        return self.get_state()

    def env_step(self, action: np.ndarray) -> np.ndarray:
        self.physics.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), self.env_action_low,
                                            self.env_action_high)
        # dm_control's step leaves positions (hence geom positions) in sync with the new qpos.
        self.physics.step(self.frame_skip)
        return self.get_state()

    def get_state(self) -> np.ndarray:
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel]).astype(np.float64)

    # ---- sampling (sample_state is the subclass's) ----------------------------------------
    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        start = self.sample_state(rng)
        for _ in range(1000):
            goal = self.sample_state(rng)
            if self.distance(start, goal) >= self.min_goal_distance:
                return start, goal
        raise RuntimeError(f"env.min_goal_distance={self.min_goal_distance}: no goal that far from the start "
                           f"in 1000 draws; lower it")

    # ---- pictures ------------------------------------------------------------------------
    def set_goal(self, goal: np.ndarray) -> None:
        """Move the suite's target sphere (radius = success_threshold) to the goal point."""
        self.physics.model.geom_pos[self._target, :2] = np.asarray(goal)[list(self.goal_dims)]
        # Recompute geom positions from the unchanged qpos, so the marker moves in the next frame.
        mujoco.mj_kinematics(self.physics.model.ptr, self.physics.data.ptr)

    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        return self._frames.frame(self.physics.data.ptr, size, self.camera, show_goal)

    def close(self) -> None:
        self._frames.close()


class PointMassTask(DMCTask):
    """The suite's point_mass (easy): a 0.3 kg ball on two damped slide joints in a 0.6 x 0.6 m
    arena (joint limits +-0.29 m). State [x, y, vx, vy] in m and m/s; actions are forces in
    [-1, 1]^2 (gear 0.1 N). Full force gives a terminal speed of 0.1 m/s per axis, reached with
    a 0.3 s time constant: with frame_skip=10 (0.2 s) one model step moves ~0.02 m at speed."""

    name = "point_mass"
    suite_module = suite_point_mass
    state_dim = 4
    env_action_dim = 2
    goal_dims = (0, 1)

    def __init__(self, frame_skip: int = 10, success_threshold: float = 0.015, min_goal_distance: float = 0.15,
                 margin: float = 0.02, action_chunk: int = 1) -> None:
        self.margin = float(margin)
        super().__init__(frame_skip, success_threshold, min_goal_distance, action_chunk)

    def _read_model(self) -> None:
        limit = float(self.physics.model.jnt_range[:, 1].min())  # the slide joints' range, 0.29 m
        if not 0 <= self.margin < limit:
            raise ValueError(f"env.margin={self.margin} must lie in [0, {limit}) (metres from the arena edge)")
        self._half = limit - self.margin

    @property
    def max_goal_distance(self) -> float:
        return float(2 * np.sqrt(2) * self._half)

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A resting ball anywhere in the arena, `margin` away from its edges."""
        return np.array([*rng.uniform(-self._half, self._half, 2), 0.0, 0.0])


class ReacherTask(DMCTask):
    """The suite's reacher: a two-link planar arm (links 0.12 m, reach 0.24 m) with an unlimited
    shoulder and a wrist limited to +-160 deg. Actions are torques in [-1, 1]^2 (gear 0.05 N m).

    The goal is a fingertip position, so the state carries it:
    [q_shoulder, q_wrist, dq_shoulder, dq_wrist, finger_x, finger_y] (rad, rad/s, m). Only the
    joint entries are set by `reset`; the fingertip follows by forward kinematics. The shoulder
    angle is not wrapped, so states stay continuous as the arm turns round. Full torque spins the
    arm up to ~5 rad/s: with frame_skip=2 (0.04 s) one model step moves the fingertip up to
    ~0.05 m (~0.006 m in the first step from rest)."""

    name = "reacher"
    suite_module = suite_reacher
    state_dim = 6
    env_action_dim = 2
    goal_dims = (4, 5)

    def __init__(self, frame_skip: int = 2, success_threshold: float = 0.06,
                 min_goal_distance: float = 0.1, action_chunk: int = 1) -> None:
        super().__init__(frame_skip, success_threshold, min_goal_distance, action_chunk)

    def _read_model(self) -> None:
        """Shoulder position, link lengths and wrist range (for fingertip() and sampling)."""
        named = self.physics.named.model
        self._shoulder = named.body_pos["arm", :2].copy()
        self._upper = float(np.linalg.norm(named.body_pos["hand", :2]))
        self._fore = float(np.linalg.norm(named.body_pos["finger", :2]))
        self._wrist_range = named.jnt_range["wrist"].copy()

    @property
    def max_goal_distance(self) -> float:
        return 2 * (self._upper + self._fore)

    def fingertip(self, joints: np.ndarray) -> np.ndarray:
        """Fingertip (x, y) of joint angles (..., 2), by the arm's planar kinematics (both
        links lie along their body's x axis, both hinges turn about z)."""
        joints = np.asarray(joints, dtype=np.float64)
        q1, q12 = joints[..., 0], joints[..., 0] + joints[..., 1]
        x = self._shoulder[0] + self._upper * np.cos(q1) + self._fore * np.cos(q12)
        y = self._shoulder[1] + self._upper * np.sin(q1) + self._fore * np.sin(q12)
        return np.stack([x, y], axis=-1)

    def get_state(self) -> np.ndarray:
        finger = self.physics.named.data.geom_xpos["finger", :2]
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel, finger]).astype(np.float64)

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """A resting arm: any shoulder angle, a wrist angle within its limits (as the suite's
        episode starts); the fingertip entries are its forward kinematics."""
        joints = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(*self._wrist_range)])
        return np.concatenate([joints, np.zeros(2), self.fingertip(joints)])
