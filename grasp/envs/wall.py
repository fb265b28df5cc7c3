"""Wall: a 2-D point agent in two rooms joined by a door (the paper's Wall-Single), on MuJoCo.

Most evaluation pairs put the goal in the other room, so the straight line hits the wall:
greedy planners push into the wall, planners that find the door succeed.
"""

from __future__ import annotations

import mujoco
import numpy as np

from grasp.envs.base import Task
from grasp.envs.planar_point import PlanarPointState
from grasp.envs.rendering import GOAL_GROUP, FrameRenderer

_XML = """
<mujoco model="wall">
  <option timestep="{timestep}" gravity="0 0 0"/>
  <visual><global offwidth="512" offheight="512"/></visual>
  <default><geom friction="0.05 0.005 0.0001" rgba="0.35 0.3 0.25 1"/></default>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1" directional="true" castshadow="false"/>
    <camera name="top" pos="0 0 {cam_height}" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="floor" type="plane" size="{floor} {floor} 0.1" rgba="0.92 0.92 0.88 1" contype="0" conaffinity="0"/>
    <geom name="bound_left" type="box" pos="{bound_pos} 0 0.05" size="{half_t} {bound_len} 0.05"/>
    <geom name="bound_right" type="box" pos="-{bound_pos} 0 0.05" size="{half_t} {bound_len} 0.05"/>
    <geom name="bound_top" type="box" pos="0 {bound_pos} 0.05" size="{bound_len} {half_t} 0.05"/>
    <geom name="bound_bottom" type="box" pos="0 -{bound_pos} 0.05" size="{bound_len} {half_t} 0.05"/>
    <geom name="wall_low" type="box" pos="0 {low_center} 0.05" size="{half_t} {low_half} 0.05"/>
    <geom name="wall_high" type="box" pos="0 {high_center} 0.05" size="{half_t} {high_half} 0.05"/>
    <site name="goal" type="cylinder" pos="0 0 0.002" size="{goal_radius} 0.001" rgba="0.9 0.2 0.2 0.8"
          group="{goal_group}"/>
    <body name="agent" pos="0 0 0.05">
      <joint name="x" type="slide" axis="1 0 0" damping="{damping}"/>
      <joint name="y" type="slide" axis="0 1 0" damping="{damping}"/>
      <geom name="agent" type="sphere" size="{radius}" mass="{mass}" rgba="0.15 0.35 0.85 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor joint="y" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


class WallTask(PlanarPointState, Task):
    """State [x, y, vx, vy]; actions are forces in [-1, 1]^2. With the defaults the agent
    settles at ~1 unit/s within two model steps, i.e. ~0.1 units per model step."""

    name = "wall"
    state_dim = 4
    env_action_dim = 2
    goal_dims = (0, 1)
    version = 2  # 2: frames without shadows (why: docs/benchmarks/README.md)

    def __init__(self, door_center: float = 0.0, door_width: float = 0.35, arena_half: float = 1.0,
                 wall_thickness: float = 0.06, agent_radius: float = 0.05, mass: float = 1.0,
                 damping: float = 10.0, gear: float = 10.0, timestep: float = 0.01, frame_skip: int = 10,
                 success_threshold: float = 0.1, cross_prob: float = 0.75, min_goal_distance: float = 0.5,
                 margin: float = 0.02, action_chunk: int = 1) -> None:
        half_t = wall_thickness / 2
        door_low, door_high = door_center - door_width / 2, door_center + door_width / 2
        if not (-arena_half < door_low < door_high < arena_half):
            raise ValueError(f"env.door_center={door_center} with env.door_width={door_width} must leave the door "
                             f"inside the arena (-{arena_half}, {arena_half})")
        if door_width <= 2 * agent_radius:
            raise ValueError(f"env.door_width={door_width} must exceed the agent's diameter {2 * agent_radius}")
        if not 0.0 <= cross_prob <= 1.0:
            raise ValueError(f"env.cross_prob={cross_prob} must lie in [0, 1]")
        if frame_skip < 1:
            raise ValueError(f"env.frame_skip={frame_skip} must be >= 1")
        self.door_center, self.door_width = float(door_center), float(door_width)
        self.arena_half, self.wall_thickness = float(arena_half), float(wall_thickness)
        self.agent_radius = float(agent_radius)
        self.frame_skip = int(frame_skip)
        self.set_action_chunk(action_chunk)
        self.success_threshold = float(success_threshold)
        self.cross_prob, self.min_goal_distance, self.margin = float(cross_prob), float(min_goal_distance), float(margin)
        low_half = (door_low + arena_half) / 2
        high_half = (arena_half - door_high) / 2
        xml = _XML.format(
            timestep=timestep, cam_height=(arena_half + wall_thickness) / np.tan(np.radians(22.5)),
            floor=arena_half + 0.2, half_t=half_t, bound_pos=arena_half + half_t, bound_len=arena_half + wall_thickness,
            low_center=-arena_half + low_half, low_half=low_half, high_center=arena_half - high_half,
            high_half=high_half, goal_radius=success_threshold, goal_group=GOAL_GROUP, damping=damping,
            radius=agent_radius, mass=mass, gear=gear,
        )
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._goal_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        self._frames = FrameRenderer(self.model)

    # ---- simulation ----------------------------------------------------------------------
    def env_step(self, action: np.ndarray) -> np.ndarray:
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        return self.get_state()

    # ---- sampling ------------------------------------------------------------------------
    def _room_bounds(self, room: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """x and y ranges where the agent fits without touching a wall; room 0 = left, 1 = right."""
        clear = self.agent_radius + self.margin
        inner = self.wall_thickness / 2 + clear
        x = (-self.arena_half + clear, -inner) if room == 0 else (inner, self.arena_half - clear)
        return x, (-self.arena_half + clear, self.arena_half - clear)

    def _sample_in_room(self, rng: np.random.Generator, room: int) -> np.ndarray:
        (x0, x1), (y0, y1) = self._room_bounds(room)
        return np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), 0.0, 0.0])

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._sample_in_room(rng, int(rng.integers(2)))

    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        room = int(rng.integers(2))
        goal_room = 1 - room if rng.random() < self.cross_prob else room
        start = self._sample_in_room(rng, room)
        for _ in range(1000):
            goal = self._sample_in_room(rng, goal_room)
            if np.linalg.norm(goal[:2] - start[:2]) >= self.min_goal_distance:
                return start, goal
        raise RuntimeError(f"env.min_goal_distance={self.min_goal_distance} is too large for the rooms")

    def room_of(self, state: np.ndarray) -> np.ndarray:
        return (np.asarray(state)[..., 0] > 0).astype(int)

    def crosses_wall(self, start: np.ndarray, goal: np.ndarray) -> bool:
        """Whether the straight segment start -> goal is blocked by the wall (misses the door)."""
        (x0, y0), (x1, y1) = np.asarray(start)[:2], np.asarray(goal)[:2]
        if (x0 > 0) == (x1 > 0):
            return False
        y_at_wall = y0 + (y1 - y0) * (0.0 - x0) / (x1 - x0)
        return abs(y_at_wall - self.door_center) > self.door_width / 2 - self.agent_radius

    # ---- pictures ------------------------------------------------------------------------
    def set_goal(self, goal: np.ndarray) -> None:
        """Show the goal as a red disc of the success radius in rendered frames."""
        self.model.site_pos[self._goal_site, :2] = np.asarray(goal)[:2]
        mujoco.mj_kinematics(self.model, self.data)  # so the next frame shows it without a reset

    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        return self._frames.frame(self.data, size, "top", show_goal)

    def close(self) -> None:
        self._frames.close()
