"""Push-T's geometry: the original's units and T shape, the MJCF model of the table, and the
block-pose helpers (the task itself: grasp.envs.pusht, whose docstring explains the units)."""

from __future__ import annotations

import math

import numpy as np

#: one unit of this task in the original's pixels
PX = 256.0


def _px(value: float) -> float:
    return value / PX


# The T in pixels: the bar spans y in [-30, 0] below the top edge, the stem y in [-120, -30].
BAR_AREA, STEM_AREA = 120 * 30, 30 * 90
#: centroid below the top edge of the bar, px
_CENTROID_DEPTH = (BAR_AREA * 15 + STEM_AREA * 75) / (BAR_AREA + STEM_AREA)
#: (centre, half sizes) of the bar and the stem in the block frame (origin at the centroid), units
BAR = (np.array([0.0, _px(_CENTROID_DEPTH - 15)]), np.array([_px(60), _px(15)]))
STEM = (np.array([0.0, _px(_CENTROID_DEPTH - 75)]), np.array([_px(15), _px(45)]))
#: the T's outline, counter-clockwise, in the block frame (units)
OUTLINE = np.array([(-60, 0), (-60, -30), (-15, -30), (-15, -120), (15, -120), (15, -30), (60, -30), (60, 0)],
                   dtype=np.float64) / PX + np.array([0.0, _px(_CENTROID_DEPTH)])
#: largest distance of a point of the T from its centroid
BLOCK_RADIUS = float(np.max(np.linalg.norm(OUTLINE, axis=1)))


def _radius_of_gyration() -> float:
    second_moment = 0.0
    for (centre, half), area in ((BAR, BAR_AREA), (STEM, STEM_AREA)):
        second_moment += area * ((4 * half @ half) / 12 + centre @ centre)
    return math.sqrt(second_moment / (BAR_AREA + STEM_AREA))


#: radius of gyration of the (uniform) T about its centroid, units
BLOCK_GYRATION = _radius_of_gyration()
#: the original's pusher radius, units
PUSHER_RADIUS = _px(15)

MJCF = """
<mujoco model="pusht">
  <option timestep="{timestep}" gravity="0 0 0" integrator="implicitfast"/>
  <visual>
    <global offwidth="512" offheight="512"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <asset><material name="matte" specular="0" shininess="0" reflectance="0"/></asset>
  <default><geom friction="0.1 0.005 0.0001" material="matte" rgba="0.35 0.3 0.25 1"/></default>
  <worldbody>
    <camera name="top" pos="0 0 {cam_height}" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="floor" type="plane" size="{floor} {floor} 0.1" rgba="0.95 0.95 0.95 1" contype="0" conaffinity="0"/>
    <geom name="wall_right" type="box" pos="{wall_pos} 0 0.05" size="{half_t} {wall_len} 0.05"/>
    <geom name="wall_left" type="box" pos="-{wall_pos} 0 0.05" size="{half_t} {wall_len} 0.05"/>
    <geom name="wall_top" type="box" pos="0 {wall_pos} 0.05" size="{wall_len} {half_t} 0.05"/>
    <geom name="wall_bottom" type="box" pos="0 -{wall_pos} 0.05" size="{wall_len} {half_t} 0.05"/>
    <body name="goal" mocap="true" pos="0 0 0.001">
      <geom name="goal_bar" type="box" pos="0 {bar_y} 0" size="{bar_hx} {bar_hy} 0.001" rgba="0.3 0.8 0.3 0.5"
            contype="0" conaffinity="0" group="{goal_group}"/>
      <geom name="goal_stem" type="box" pos="0 {stem_y} 0" size="{stem_hx} {stem_hy} 0.001" rgba="0.3 0.8 0.3 0.5"
            contype="0" conaffinity="0" group="{goal_group}"/>
    </body>
    <body name="pusher" pos="0 0 0.05">
      <joint name="pusher_x" type="slide" axis="1 0 0" damping="{pusher_gain}"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" damping="{pusher_gain}"/>
      <geom name="pusher" type="sphere" size="{pusher_radius}" mass="{pusher_mass}" rgba="0.25 0.41 0.88 1"/>
    </body>
    <body name="block" pos="0 0 0.05">
      <joint name="block_x" type="slide" axis="1 0 0" damping="{block_damping}" frictionloss="{block_frictionloss}"/>
      <joint name="block_y" type="slide" axis="0 1 0" damping="{block_damping}" frictionloss="{block_frictionloss}"/>
      <joint name="block_yaw" type="hinge" axis="0 0 1" damping="{block_damping_yaw}"
             frictionloss="{block_frictionloss_yaw}"/>
      <geom name="bar" type="box" pos="0 {bar_y} 0" size="{bar_hx} {bar_hy} 0.05" mass="{bar_mass}"
            friction="{block_friction} 0.005 0.0001" priority="1" rgba="0.47 0.53 0.6 1"/>
      <geom name="stem" type="box" pos="0 {stem_y} 0" size="{stem_hx} {stem_hy} 0.05" mass="{stem_mass}"
            friction="{block_friction} 0.005 0.0001" priority="1" rgba="0.47 0.53 0.6 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="pusher_x" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor joint="pusher_y" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def wrap_angle(angle):
    """Angles wrapped to (-pi, pi]; works on arrays."""
    return np.pi - np.mod(np.pi - np.asarray(angle, dtype=np.float64), 2 * np.pi)


def block_pose(state: np.ndarray) -> np.ndarray:
    """The block's (x, y, angle in (-pi, pi]) of (..., 11) states."""
    state = np.asarray(state, dtype=np.float64)
    return np.concatenate([state[..., 2:4], np.arctan2(state[..., 5], state[..., 4])[..., None]], axis=-1)


def make_state(pusher=(0.0, 0.0), block=(0.0, 0.0, 0.0), velocity=(0.0,) * 5) -> np.ndarray:
    """A state from the pusher position, the block pose (x, y, angle) and the five joint velocities
    (pusher vx, vy, block vx, vy, vangle)."""
    x, y, angle = (float(v) for v in block)
    return np.array([*pusher, x, y, math.cos(angle), math.sin(angle), *velocity], dtype=np.float64)


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def block_distance(point: np.ndarray, block_pose: np.ndarray) -> float:
    """Distance from a world point (x, y) to the T at pose (x, y, angle); negative inside."""
    local = rotation(block_pose[2]).T @ (np.asarray(point, dtype=np.float64) - block_pose[:2])
    dists = []
    for centre, half in (BAR, STEM):
        q = np.abs(local - centre) - half
        dists.append(float(np.linalg.norm(np.maximum(q, 0.0)) + min(q.max(), 0.0)))
    return min(dists)


class BlockPoseGoal:
    """Push-T's goal test on the block pose of (..., 11) states, for any Push-T (ours or the
    original): needs `success_pos`, `success_angle` and `angle_weight` in the state's units."""

    success_pos: float
    success_angle: float
    angle_weight: float

    def pose_errors(self, state: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block position error and |wrapped angle error|; works on (..., D) batches."""
        state, goal = block_pose(state), block_pose(goal)
        pos = np.linalg.norm(state[..., :2] - goal[..., :2], axis=-1)
        return pos, np.abs(wrap_angle(state[..., 2] - goal[..., 2]))

    def distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Block position error + angle_weight * |wrapped angle error|."""
        pos, angle = self.pose_errors(state, goal)
        return pos + self.angle_weight * angle

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Position error < success_pos and angle error < success_angle (DINO-WM's rule)."""
        pos, angle = self.pose_errors(state, goal)
        return (pos < self.success_pos) & (angle < self.success_angle)
