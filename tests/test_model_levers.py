"""scripts/model_levers.py: every lever is its overrides on one fixed base, and the split of a
model's oracle misses by the error that fails them."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from conftest import REPO_ROOT
from grasp.config import compose
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


def test_a_lever_changes_only_what_it_overrides(levers):
    """The base keeps 256 units whatever width the preset (experiment=paper_long_horizon) picks,
    so a lever that names no width is measured at the base's."""
    def model(name):
        return compose([*levers.BASE, "actions=stacked5", *levers.LEVERS[name]]).world_model
    assert model("baseline").hidden_dim == 256
    assert model("data20x_rollout8_frame_20k_lr2e-3_bf16_ensemble2").hidden_dim == 256
    assert model("data20x_rollout8_frame_20k_lr2e-3_wide384").hidden_dim == 384
    ensemble = model("data20x_rollout8_frame_20k_lr2e-3_bf16_ensemble2")
    assert ensemble.members == 2 and ensemble.pred_steps == 8 and ensemble.frame is not None


def test_a_continued_lever_starts_from_the_trained_model_with_its_own_settings(levers, tmp_path):
    """continue_training keeps the trained weights and statistics (not refitted to the data) and
    trains with the continuation's settings: here 3-step windows at learning rate 0 change nothing."""
    import torch

    from grasp.job import resolve
    from grasp.train.dataset import collect
    from grasp.train.trainer import build_world_model

    for lever, overrides in levers.CONTINUED.values():
        assert lever in levers.LEVERS
        compose([*levers.BASE, "actions=held5", *levers.LEVERS[lever], *overrides])
    cfg = compose(["env=wall", "world_model.hidden_dim=16", "world_model.pred_steps=3", "train.steps=2", "train.lr=0",
                   "train.batch_size=8"])
    job = resolve(compose(["env=wall", f"paths.root_dir={tmp_path}", "logger.wandb.mode=disabled"]), tmp_path / "job")
    try:
        data = collect(job.task, 12, 10, job.data_policy, float(cfg.data.correlation), 0, progress=False)
    finally:
        job.close()
    trained = build_world_model(compose(["env=wall", "world_model.hidden_dim=16"]).world_model,
                                data.states.shape[-1], data.actions.shape[-1])
    trained.prepare(torch.as_tensor(data.states[:2]), torch.as_tensor(data.actions[:2]))  # not the data's statistics
    model, metrics = levers.continue_training(trained, cfg, data)
    assert trained.pred_steps == 1 and model.pred_steps == 3
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert metrics


def test_block_motion_counts_the_moving_trajectories_and_their_shift_and_path(levers):
    task = PushTTask()
    try:
        px = 1 / PX
        still = [make_state(block=(0.1, 0.1, 0.0))] * 3
        straight = [make_state(block=(0.1 + k * 30 * px, 0.1, math.radians(10 * k))) for k in range(3)]
        back = [make_state(block=(0.1 + x * px, 0.1, 0.0)) for x in (0, 60, 30)]  # out 60 px, back 30
        motion = levers.block_motion(task, np.stack([np.stack(t) for t in (still, straight, back)]), 2)
    finally:
        task.close()
    assert (motion["moved"], motion["trajectories"]) == (2, 3)  # the block that stays is not counted
    assert motion["median_shift_px"] == pytest.approx(45.0, abs=0.1)  # net 60 and 30 px
    assert motion["median_path_px"] == pytest.approx(75.0, abs=0.1)  # travelled 60 and 90 px
    assert motion["median_turn_deg"] == pytest.approx(10.0, abs=0.1)  # 20 and 0 degrees
    assert motion["median_turning_deg"] == pytest.approx(10.0, abs=0.1)
