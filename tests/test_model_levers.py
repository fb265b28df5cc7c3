"""scripts/model_levers.py: the split of a model's oracle misses by the error that fails them."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from conftest import REPO_ROOT
from grasp.envs.pusht import PushTTask
from grasp.envs.pusht_geometry import PX, make_state


@pytest.fixture(scope="module")
def levers():
    spec = importlib.util.spec_from_file_location("model_levers", REPO_ROOT / "scripts" / "model_levers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_misses_are_split_by_the_error_that_fails_them(levers):
    task = PushTTask()
    try:
        truth = np.stack([make_state(block=(0.1, 0.2, 0.5))] * 4)
        off_px, off_deg = 30.0, 30.0  # beyond the 20 px / 20 degree rule
        predicted = np.stack([
            make_state(block=(0.1 + 5 / PX, 0.2, 0.5 + math.radians(5))),  # passes
            make_state(block=(0.1, 0.2, 0.5 + math.radians(off_deg))),  # the angle alone fails
            make_state(block=(0.1 + off_px / PX, 0.2, 0.5)),  # the position alone fails
            make_state(block=(0.1, 0.2 - off_px / PX, 0.5 - math.radians(off_deg))),  # both
        ])
        split = levers.miss_split(task, predicted, truth)
    finally:
        task.close()
    assert split["trajectories"] == 4
    assert [split[k] for k in ("pass_%", "angle_only_%", "position_only_%", "both_%")] == [25.0] * 4
    assert split["median_position_px"] == pytest.approx(17.5, abs=0.1)  # errors 5, 0, 30, 30 px
    assert split["median_angle_deg"] == pytest.approx(17.5, abs=0.1)  # 5, 30, 0, 30 degrees
