"""Every task on our own renderer draws its goal marker only with show_goal=True: the frames a pixel
model observes (show_goal=False) do not depend on the goal at all. Frames have no shadows or
reflections. Tasks adapted from gymnasium envs (gym_*) draw what their env draws; they are left out."""

from __future__ import annotations

import hydra
import mujoco
import numpy as np
import pytest

from conftest import compose_config
from grasp.config import CONF_DIR
from grasp.envs import rendering
from grasp.envs.rendering import GOAL_GROUP, goal_option

ENVS = sorted(path.stem for path in (CONF_DIR / "env").glob("*.yaml") if not path.stem.startswith("gym_"))


@pytest.fixture(scope="module", params=ENVS)
def task(request):
    task = hydra.utils.instantiate(compose_config([f"env={request.param}"]).env)
    yield task
    task.close()


def far_goal(task, start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Of a few sampled states, the one whose goal point lies farthest from `start`'s."""
    candidates = [task.sample_state(rng) for _ in range(20)]
    return max(candidates, key=lambda goal: float(task.distance(start, goal)))


def test_goal_marker_shows_only_with_show_goal(task):
    rng = np.random.default_rng(0)
    start = task.reset(task.sample_state(rng))
    task.set_goal(far_goal(task, start, rng))
    with_goal, without = task.render(64, show_goal=True), task.render(64, show_goal=False)
    for image in (with_goal, without):
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 5
    assert np.abs(with_goal.astype(int) - without).sum() > 0, "show_goal=True does not draw the goal marker"
    np.testing.assert_array_equal(task.render(64), with_goal)  # show_goal defaults to True

    task.set_goal(far_goal(task, task.get_state(), rng))
    np.testing.assert_array_equal(task.render(64, show_goal=False), without)  # exact: the goal does not leak
    assert np.abs(task.render(64, show_goal=True).astype(int) - with_goal).sum() > 0, "the marker did not move"


def test_goal_group_holds_only_the_goal_marker(task):
    model = task.physics.model.ptr if hasattr(task, "physics") else task.model
    names = [mujoco.mj_id2name(model, kind, i) for kind, groups in ((mujoco.mjtObj.mjOBJ_GEOM, model.geom_group),
                                                                    (mujoco.mjtObj.mjOBJ_SITE, model.site_group))
             for i in np.flatnonzero(groups == GOAL_GROUP)]
    assert names and all("goal" in name or "target" in name for name in names), names


def test_goal_option_keeps_mujocos_default_groups():
    default = mujoco.MjvOption()
    for show in (False, True):
        option = goal_option(show)
        for field in ("geomgroup", "sitegroup"):
            expected = np.array(getattr(default, field))
            expected[GOAL_GROUP] = int(show)
            np.testing.assert_array_equal(getattr(option, field), expected)


def test_frames_leave_out_shadows_and_reflections(monkeypatch):
    """dm-control's point_mass has a shadow-casting light and a reflective floor: the flag must
    reach the renderer (frames differ with it on), and it is off by default."""
    task = hydra.utils.instantiate(compose_config(["env=point_mass"]).env)
    try:
        task.reset(task.sample_state(np.random.default_rng(0)))
        plain = task.render(64, show_goal=False)
        monkeypatch.setattr(rendering, "EFFECTS", True)
        assert np.abs(task.render(64, show_goal=False).astype(int) - plain).mean() > 1
        monkeypatch.setattr(rendering, "EFFECTS", False)
        np.testing.assert_array_equal(task.render(64, show_goal=False), plain)
    finally:
        task.close()
    assert rendering.EFFECTS is False
