"""The original Push-T (pymunk physics, `gym-pusht` on PyPI) as a task, through the gymnasium adapter.

This is the lineage of DINO-WM's environment: a kinematic round agent driven by a PD controller
towards a target position (the action, in the 512 x 512 px table), a T block without table drag
(pymunk damping 0), 10 Hz control. gym-pusht's own observation (agent xy, block xy, angle) is not
Markov (it leaves out the velocities the next step depends on), and its `reset_to_state` steps the
physics once, so the state is read from and written to the pymunk bodies directly:

    [agent_x, agent_y, block_x, block_y, cos(angle), sin(angle), agent_vx, agent_vy,
     block_vx, block_vy, block_vangle]            (px, px/s, rad/s)

the layout of our MuJoCo Push-T (grasp.envs.pusht), in the original's pixel units. Success is
DINO-WM's rule on the block pose: position error < 20 px and angle error < pi/9.
"""

from __future__ import annotations

import math
import os

import numpy as np

from grasp.envs.from_gymnasium import GymnasiumTask
from grasp.envs.pusht_geometry import BlockPoseGoal


def _import_gym_pusht() -> None:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on import
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames are drawn offscreen; no display needed
    try:
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    except ImportError as err:
        raise ValueError("env=gym_pusht needs the gym-pusht package: pip install 'gym-pusht==0.1.8' "
                         "(in the project's .venv: make setup installs it)") from err


class PymunkPushTState:
    """Positions and velocities of gym-pusht's agent and block bodies."""

    def state_dim(self, env) -> int:
        return 11

    def get_state(self, env) -> np.ndarray:
        agent, block = env.agent, env.block
        return np.array([*agent.position, *block.position, math.cos(block.angle), math.sin(block.angle),
                         *agent.velocity, *block.velocity, block.angular_velocity], dtype=np.float64)

    def set_state(self, env, state: np.ndarray) -> None:
        s = [float(v) for v in state]
        env.agent.position, env.agent.velocity = (s[0], s[1]), (s[6], s[7])
        env.block.angle = math.atan2(s[5], s[4])
        env.block.position, env.block.velocity, env.block.angular_velocity = (s[2], s[3]), (s[8], s[9]), s[10]


class GymPushTTask(BlockPoseGoal, GymnasiumTask):
    """gym-pusht's PushTEnv; actions in [-1, 1]^2 are the agent's target position over the table.
    Distance and success are our Push-T's (BlockPoseGoal), in px: position error + angle_weight x
    angle error, and DINO-WM's 20 px / pi/9 rule."""

    version = 1

    def __init__(self, success_pos: float = 20.0, success_angle: float = math.pi / 9, angle_weight: float = 51.2,
                 min_goal_distance: float = 64.0, policy_radius: float = 60.0, policy_hold: float = 0.2,
                 frame_skip: int = 1, action_chunk: int = 1, seed: int = 0) -> None:
        _import_gym_pusht()
        for key, value in (("success_pos", success_pos), ("success_angle", success_angle),
                           ("policy_radius", policy_radius)):
            if not value > 0:
                raise ValueError(f"env.{key}={value} must be > 0")
        if not 0 < policy_hold <= 1:
            raise ValueError(f"env.policy_hold={policy_hold} must be in (0, 1]")
        self.success_pos, self.success_angle = float(success_pos), float(success_angle)
        self.angle_weight = float(angle_weight)
        super().__init__("gym_pusht/PushT-v0", PymunkPushTState(), goal_dims=[2, 3, 4, 5],
                         success_threshold=self.success_pos + self.angle_weight * self.success_angle,
                         make_kwargs={"obs_type": "state"}, name="gym_pusht", frame_skip=frame_skip,
                         action_chunk=action_chunk, min_goal_distance=min_goal_distance, seed=seed)
        self.policy_radius, self.policy_hold = float(policy_radius), float(policy_hold)
        self.default_data_policy = "scripted"
        self._target: np.ndarray | None = None

    def reset(self, state: np.ndarray) -> np.ndarray:
        self._target = None
        return super().reset(state)

    def exploration_action(self, rng: np.random.Generator, state: np.ndarray) -> np.ndarray:
        """Pokes at the block: the target is a point drawn around the block's position (normal, std
        policy_radius px), kept until redrawn with probability policy_hold per step."""
        if self._target is None or rng.random() < self.policy_hold:
            self._target = np.asarray(state[2:4]) + rng.normal(0.0, self.policy_radius, 2)
        return np.clip(2.0 * (self._target - self._low) / (self._high - self._low) - 1.0, -1.0, 1.0)
