"""Push-T: a round pusher pushes a T-shaped block on a table until the block matches a goal pose.

The task of Diffusion Policy and DINO-WM (there on pymunk), rebuilt on MuJoCo from an MJCF string.

Units and geometry. The original table is a 512 px square; here it is the arena [-1, 1]^2, so
**1 unit = 256 px** (``PX``). The T keeps the original shape: a 120 x 30 px bar on top of a
30 x 90 px stem (the original's ``add_tee(scale=30, length=4)``), the pusher a disc of radius 15 px.
The block's position is its centroid (area centre, 40.7 px below the top edge of the bar; the
original reports the middle of the bar's top edge instead), its angle the yaw of the T, 0 when
the T stands upright (bar at +y, stem towards -y) in the top camera's picture. Four walls bound
the arena.

Physics. The table is planar: no gravity, every body stays at one height. The pusher is a sphere
on two slide joints (x, y) driven by motors with strong joint damping, a velocity servo: the
terminal speed is ``pusher_speed * action`` units/s, reached with time constant
``pusher_mass / pusher_gain`` (0.0125 s by default). With the defaults (10 Hz control like the
original: 20 MuJoCo steps of 5 ms per model step) a full action moves the free pusher 0.1 units
(25.6 px) per model step (0.088 in the first step from rest). The block slides on three joints
(slide x, slide y, hinge yaw at the centroid, not a free joint, so it stays on the table). Table
friction is modelled by joint damping -- uniform viscous drag over the T: ``block_damping`` on the
slides and ``block_damping * r_g^2`` on the hinge, r_g = 0.172 units being the T's radius of
gyration about its centroid -- plus a small Coulomb ``block_frictionloss`` (``* r_g`` on the
hinge) that brings it to a full stop. The block thus stops within about one model step when no
longer pushed (time constant ``block_mass / block_damping`` = 0.05 s), close to the original's
quasi-static block (pymunk space damping 0). Pushed by a full action, the block and pusher move
at about ``pusher_gain * pusher_speed / (pusher_gain + block_damping)`` = 0.8 units/s.
Contacts of the block (with the pusher and the walls) use ``block_friction``.

State. ``[pusher_x, pusher_y, block_x, block_y, cos(block_angle), sin(block_angle), pusher_vx,
pusher_vy, block_vx, block_vy, block_vangle]``: the angle enters as its cosine and sine, so the state
is a continuous function of the pose (a wrapped angle jumps by 2 pi, which a learned model cannot
follow; docs/benchmarks/README.md says what it did to an MLP).
``block_pose(state)`` gives ``(x, y, angle)`` back and ``make_state`` builds a state from poses.

Goal and success. ``goal_dims = (2, 3, 4, 5)``: the block pose. Success, as DINO-WM's Push-T, is a
position error below ``success_pos`` (default 20 px = 0.078125 units) and an angle error below
``success_angle`` (pi/9), angle differences wrapped to (-pi, pi]. ``distance`` is
``pos_err + angle_weight * |angle_err|``; a successful state always has a distance below
``success_threshold = success_pos + angle_weight * success_angle`` (the reverse need not hold).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from grasp.envs.base import Task
from grasp.envs.pusht_geometry import (BAR, BAR_AREA, BLOCK_GYRATION, BLOCK_RADIUS, MJCF, OUTLINE, PUSHER_RADIUS, PX,  # noqa: F401
                                       BlockPoseGoal, STEM, STEM_AREA, block_distance, block_pose, make_state, rotation,
                                       wrap_angle)
from grasp.envs.rendering import GOAL_GROUP, FrameRenderer


class _PushPlan:
    """The scripted policy's current push: a contact point on the T's outline (block frame)."""

    def __init__(self, point: np.ndarray, normal: np.ndarray, steps: int) -> None:
        self.point, self.normal = point, normal
        self.phase = "approach"
        self.steps = steps
        self.end = np.zeros(2)


class PushTTask(BlockPoseGoal, Task):
    """State [pusher_x, pusher_y, block_x, block_y, cos(block_angle), sin(block_angle), pusher_vx,
    pusher_vy, block_vx, block_vy, block_vangle]; actions in [-1, 1]^2 are pusher velocity commands
    (see module doc)."""

    name = "pusht"
    state_dim = 11
    env_action_dim = 2
    goal_dims = (2, 3, 4, 5)
    default_data_policy = "scripted"
    version = 2  # 2: the angle as (cos, sin)
    #: the original Push-T's control step (10 Hz)
    env_step_seconds = 0.1

    #: scripted policy: clearance between pusher and block before a push, units
    POLICY_GAP = 0.03
    #: scripted policy: how far through the contact point a push goes, units (uniform range)
    POLICY_DEPTH = (0.05, 0.35)
    #: scripted policy: largest deviation of the push direction from the edge normal, rad
    POLICY_SPREAD = 0.4
    #: scripted policy: model steps allowed to reach a contact point before picking another
    POLICY_APPROACH_STEPS = 25
    #: scripted policy: chance per step of dropping the current plan
    POLICY_REPLAN_PROB = 0.02

    def __init__(self, frame_skip: int = 20, timestep: float = 0.005, success_pos: float = 20 / PX,
                 success_angle: float = math.pi / 9, angle_weight: float = 0.2, min_goal_distance: float = 0.25,
                 min_goal_angle: float = math.pi / 4, block_range: float = 0.6, block_mass: float = 0.5,
                 block_friction: float = 1.0, block_damping: float = 10.0, block_frictionloss: float = 0.5,
                 pusher_radius: float = PUSHER_RADIUS, pusher_mass: float = 0.5, pusher_gain: float = 40.0,
                 pusher_speed: float = 1.0, wall_thickness: float = 0.05, margin: float = 0.02,
                 policy_noise: float = 0.2, action_chunk: int = 1) -> None:
        def need(ok: bool, knob: str, value, allowed: str) -> None:
            if not ok:
                raise ValueError(f"env.{knob}={value} must be {allowed}")

        need(int(frame_skip) == frame_skip and frame_skip >= 1, "frame_skip", frame_skip, "an integer >= 1")
        # the default contact time constant (0.02 s) must span at least two MuJoCo steps
        need(0 < timestep <= 0.01, "timestep", timestep, "in (0, 0.01] s for stable contacts")
        need(success_pos > 0, "success_pos", success_pos, "> 0")
        need(0 < success_angle < math.pi, "success_angle", success_angle, "in (0, pi)")
        need(angle_weight >= 0, "angle_weight", angle_weight, ">= 0")
        need(0 < pusher_radius <= 0.25, "pusher_radius", pusher_radius, "in (0, 0.25]")
        need(0 <= margin <= 0.1, "margin", margin, "in [0, 0.1]")
        max_range = 1.0 - BLOCK_RADIUS - margin
        need(0 < block_range <= max_range, "block_range", block_range,
             f"in (0, {max_range:.3f}] so that the T always lies inside the arena")
        need(success_pos <= min_goal_distance <= 2 * block_range, "min_goal_distance", min_goal_distance,
             f"in [success_pos={success_pos:.4f}, 2 * block_range={2 * block_range:.3f}]")
        need(success_angle <= min_goal_angle <= math.pi, "min_goal_angle", min_goal_angle,
             f"in [success_angle={success_angle:.4f}, pi]")
        for knob, value in (("block_mass", block_mass), ("block_damping", block_damping),
                            ("pusher_mass", pusher_mass), ("pusher_gain", pusher_gain),
                            ("pusher_speed", pusher_speed), ("wall_thickness", wall_thickness)):
            need(value > 0, knob, value, "> 0")
        for knob, value in (("block_friction", block_friction), ("block_frictionloss", block_frictionloss),
                            ("policy_noise", policy_noise)):
            need(value >= 0, knob, value, ">= 0")

        self.frame_skip = int(frame_skip)
        self.set_action_chunk(action_chunk)
        self.timestep = float(timestep)
        self.success_pos, self.success_angle = float(success_pos), float(success_angle)
        self.angle_weight = float(angle_weight)
        self.success_threshold = self.success_pos + self.angle_weight * self.success_angle
        self.min_goal_distance, self.min_goal_angle = float(min_goal_distance), float(min_goal_angle)
        self.block_range, self.margin = float(block_range), float(margin)
        self.pusher_radius, self.pusher_speed = float(pusher_radius), float(pusher_speed)
        self.policy_noise = float(policy_noise)
        #: pusher travel per model step at full action and terminal speed
        self.step_length = self.pusher_speed * self.timestep * self.frame_skip

        half_t = wall_thickness / 2
        total = BAR_AREA + STEM_AREA
        xml = MJCF.format(
            timestep=timestep, cam_height=(1.0 + wall_thickness) / math.tan(math.radians(22.5)), floor=1.2,
            half_t=half_t, wall_pos=1.0 + half_t, wall_len=1.0 + wall_thickness,
            bar_y=BAR[0][1], bar_hx=BAR[1][0], bar_hy=BAR[1][1], stem_y=STEM[0][1], stem_hx=STEM[1][0],
            stem_hy=STEM[1][1], bar_mass=block_mass * BAR_AREA / total, stem_mass=block_mass * STEM_AREA / total,
            block_friction=block_friction, block_damping=block_damping,
            block_damping_yaw=block_damping * BLOCK_GYRATION**2, block_frictionloss=block_frictionloss,
            block_frictionloss_yaw=block_frictionloss * BLOCK_GYRATION, pusher_radius=pusher_radius,
            pusher_mass=pusher_mass, pusher_gain=pusher_gain, gear=pusher_gain * pusher_speed,
            goal_group=GOAL_GROUP,
        )
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # overlap checks of sampled states
        self._goal_body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "goal")
        self._goal_mocap = int(self.model.body_mocapid[self._goal_body])
        self._frames = FrameRenderer(self.model)
        self._plan: _PushPlan | None = None
        mujoco.mj_forward(self.model, self.data)

    @property
    def env_steps_per_action(self) -> float:
        return self.frame_skip * self.timestep / self.env_step_seconds

    # ---- simulation ----------------------------------------------------------------------
    def _write(self, data: mujoco.MjData, state: np.ndarray) -> None:
        mujoco.mj_resetData(self.model, data)
        data.qpos[:] = [*state[:4], math.atan2(state[5], state[4])]
        data.qvel[:] = state[6:11]
        mujoco.mj_forward(self.model, data)

    def reset(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.state_dim,):
            raise ValueError(f"pusht state must have shape ({self.state_dim},), got {state.shape}")
        self._write(self.data, state)
        self._plan = None  # a new episode: the scripted policy starts afresh
        return self.get_state()

    def env_step(self, action: np.ndarray) -> np.ndarray:
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        return self.get_state()

    def get_state(self) -> np.ndarray:
        qpos = self.data.qpos
        return np.array([*qpos[:4], math.cos(qpos[4]), math.sin(qpos[4]), *self.data.qvel], dtype=np.float64)

    # ---- sampling ------------------------------------------------------------------------
    def _clear(self, state: np.ndarray) -> bool:
        """Whether the pusher keeps `margin` from the block and nothing touches in the simulator."""
        if block_distance(state[:2], block_pose(state)) < self.pusher_radius + self.margin:
            return False
        self._write(self._scratch, state)
        return self._scratch.ncon == 0

    def _sample_pose(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([*rng.uniform(-self.block_range, self.block_range, 2), rng.uniform(-np.pi, np.pi)])

    def _sample_with_block(self, rng: np.random.Generator, block: np.ndarray) -> np.ndarray:
        reach = 1.0 - self.pusher_radius - self.margin
        for _ in range(1000):
            state = make_state(rng.uniform(-reach, reach, 2), block)
            if self._clear(state):
                return state
        raise RuntimeError("pusht: found no pusher position clear of the block")  # not reachable in practice

    def sample_state(self, rng: np.random.Generator) -> np.ndarray:
        """Block centroid uniform in [-block_range, block_range]^2, any angle; the pusher uniform
        over the arena, at least `margin` away from the block and the walls; at rest."""
        return self._sample_with_block(rng, self._sample_pose(rng))

    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The goal block pose is at least min_goal_distance away or turned by min_goal_angle."""
        start = self.sample_state(rng)
        for _ in range(1000):
            pose = self._sample_pose(rng)
            pos, angle = self.pose_errors(make_state(block=pose), start)
            if pos >= self.min_goal_distance or angle >= self.min_goal_angle:
                return start, self._sample_with_block(rng, pose)
        raise RuntimeError(f"env.min_goal_distance={self.min_goal_distance} and env.min_goal_angle="
                           f"{self.min_goal_angle} leave no goal")  # not reachable: validated

    # ---- scripted exploration ------------------------------------------------------------
    def _new_plan(self, rng: np.random.Generator, block: np.ndarray) -> _PushPlan | None:
        """A contact point on the T's outline (picked by edge length) whose approach point is
        free and inside the arena."""
        edges = np.roll(OUTLINE, -1, axis=0) - OUTLINE
        lengths = np.linalg.norm(edges, axis=1)
        rot = rotation(block[2])
        reach = 1.0 - self.pusher_radius - self.margin
        for _ in range(20):
            k = int(rng.choice(len(edges), p=lengths / lengths.sum()))
            tangent = edges[k] / lengths[k]
            point = OUTLINE[k] + tangent * rng.uniform(0.0, lengths[k])
            normal = np.array([tangent[1], -tangent[0]])  # outward: the outline runs counter-clockwise
            approach = block[:2] + rot @ (point + normal * (self.pusher_radius + self.POLICY_GAP))
            if np.all(np.abs(approach) <= reach) and \
                    block_distance(approach, block) >= self.pusher_radius + self.POLICY_GAP / 2:
                return _PushPlan(point, normal, self.POLICY_APPROACH_STEPS)
        return None

    def exploration_action(self, rng: np.random.Generator, state: np.ndarray) -> np.ndarray:
        """Scripted pushing: pick a point on the T's outline, go around the block to just outside
        it, then push through it (direction within POLICY_SPREAD of the edge normal, depth in
        POLICY_DEPTH); Gaussian action noise of std `policy_noise`. The plan lives in the task
        and is dropped by `reset`, at the end of a push, after POLICY_APPROACH_STEPS steps
        without reaching the point, or at random (POLICY_REPLAN_PROB per step)."""
        state = np.asarray(state, dtype=np.float64)
        pusher, block = state[:2], block_pose(state)
        plan = self._plan
        if plan is None or plan.steps <= 0 or rng.random() < self.POLICY_REPLAN_PROB:
            plan = self._plan = self._new_plan(rng, block)
        if plan is None:  # no free contact point (block jammed against walls): wander
            return rng.uniform(-1.0, 1.0, 2)
        if plan.phase == "approach":
            rot = rotation(block[2])
            normal = rot @ plan.normal
            approach = block[:2] + rot @ plan.point + normal * (self.pusher_radius + self.POLICY_GAP)
            if np.linalg.norm(approach - pusher) < max(0.03, 0.3 * self.step_length):
                turn = rotation(rng.uniform(-self.POLICY_SPREAD, self.POLICY_SPREAD))
                travel = self.POLICY_GAP + rng.uniform(*self.POLICY_DEPTH)
                plan.phase, plan.end = "push", pusher + turn @ (-normal) * travel
                plan.steps = int(math.ceil(travel / (0.7 * self.step_length))) + 1
                target = plan.end
            else:
                target = self._around_block(pusher, block, approach)
        else:
            target = plan.end
        plan.steps -= 1
        action = (target - pusher) / self.step_length
        norm = np.linalg.norm(action)
        if norm > 1.0:
            action = action / norm
        action = action + self.policy_noise * rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0)

    def _around_block(self, pusher: np.ndarray, block: np.ndarray, approach: np.ndarray) -> np.ndarray:
        """The next waypoint to `approach`: straight there when it lies on the pusher's side of
        the block, else along a circle around the block."""
        offset, wanted = pusher - block[:2], approach - block[:2]
        turn = float(wrap_angle(math.atan2(wanted[1], wanted[0]) - math.atan2(offset[1], offset[0])))
        if abs(turn) < 0.35:
            return approach
        orbit = BLOCK_RADIUS + self.pusher_radius + self.POLICY_GAP
        heading = math.atan2(offset[1], offset[0]) + float(np.clip(turn, -0.7, 0.7))
        return block[:2] + orbit * np.array([math.cos(heading), math.sin(heading)])

    # ---- pictures ------------------------------------------------------------------------
    def set_goal(self, goal: np.ndarray) -> None:
        """Show the goal block pose as a translucent green T (no collisions) under the block."""
        x, y, angle = block_pose(goal)
        quat = np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])
        # body_pos too: mj_resetData (in reset) copies it into mocap_pos
        self.model.body_pos[self._goal_body, :2] = self.data.mocap_pos[self._goal_mocap, :2] = (x, y)
        self.model.body_quat[self._goal_body] = self.data.mocap_quat[self._goal_mocap] = quat
        mujoco.mj_kinematics(self.model, self.data)  # geom_xpos, which the renderer draws from

    def render(self, size: int = 64, show_goal: bool = True) -> np.ndarray:
        return self._frames.frame(self.data, size, "top", show_goal)

    def close(self) -> None:
        self._frames.close()
