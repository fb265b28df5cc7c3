"""Headless frames from a MuJoCo model: one cached mujoco.Renderer per frame size."""

from __future__ import annotations

import mujoco
import numpy as np

#: the geom and site group of every goal marker: frames leave it out with show_goal=False, so that
#: what a pixel model observes does not give the goal away
GOAL_GROUP = 5


def goal_option(show_goal: bool) -> mujoco.MjvOption:
    """MuJoCo's default visibility (groups 0-2 drawn, 3-5 hidden) with GOAL_GROUP on or off."""
    option = mujoco.MjvOption()
    option.geomgroup[GOAL_GROUP] = option.sitegroup[GOAL_GROUP] = int(show_goal)
    return option


#: frames are drawn without shadows and reflections: they cost several times a plain frame (docs/
#: benchmarks/README.md, "Measurements behind code choices") and show a pixel model nothing the
#: objects themselves do not
EFFECTS = False


class FrameRenderer:
    """Renders `model` at any square size; renderers are made once per size and kept, since
    building one (an EGL context) costs far more than a frame."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._options = {show: goal_option(show) for show in (False, True)}

    def frame(self, data: mujoco.MjData, size: int, camera, show_goal: bool = True) -> np.ndarray:
        """(size, size, 3) uint8 RGB of `data` seen from `camera` (a name, id or MjvCamera);
        show_goal=False leaves out the geoms and sites of GOAL_GROUP."""
        if size not in self._renderers:
            visual = self.model.vis.global_  # the offscreen buffer must hold the frame
            visual.offwidth, visual.offheight = max(visual.offwidth, size), max(visual.offheight, size)
            self._renderers[size] = mujoco.Renderer(self.model, size, size)
        renderer = self._renderers[size]
        # mj_step leaves positions computed before its last integration: without this, a frame
        # shows the state one physics step before the one the task reports
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_camlight(self.model, data)
        renderer.update_scene(data, camera=camera, scene_option=self._options[bool(show_goal)])
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            renderer.scene.flags[flag] = EFFECTS
        return renderer.render().copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
