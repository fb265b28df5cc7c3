"""Frame datasets and frame-stack observations on the real Wall task."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from conftest import compose_config
from grasp.envs.observe import FrameHistory, frame, goal_observation
from grasp.train.dataset import TrajectoryDataset, collect, load_or_collect
from grasp.train.trainer import Episodes, build_world_model


@pytest.fixture(scope="module")
def wall():
    task = hydra.utils.instantiate(compose_config().env)
    yield task
    task.close()


@pytest.fixture(scope="module")
def frames_data(wall):
    return collect(wall, episodes=4, episode_len=5, policy="colored", correlation=0.8, seed=0, progress=False,
                   frame_size=16)


def test_collected_frames_are_the_renders_of_the_states(wall, frames_data, tmp_path):
    data = frames_data
    assert data.frames.shape == (4, 6, 3, 16, 16) and data.frames.dtype == np.uint8
    assert data.meta["frame_size"] == 16
    for e, t in ((0, 0), (2, 3), (3, 5)):
        wall.reset(data.states[e, t].astype(np.float64))
        # exact: a frame shows the state the task reports, not the one a physics step before
        np.testing.assert_array_equal(frame(wall, 16), data.frames[e, t])
    assert not np.array_equal(data.frames[0, 0], data.frames[0, 5]), "the agent moved"
    data.save(tmp_path / "d.npz")
    again = TrajectoryDataset.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(again.frames, data.frames)
    train, val = again.split(0.25)
    np.testing.assert_array_equal(val.frames, data.frames[3:])
    np.testing.assert_array_equal(train.frames, data.frames[:3])
    state_only = collect(wall, episodes=2, episode_len=3, policy="uniform", correlation=0.0, seed=0, progress=False)
    state_only.save(tmp_path / "s.npz")
    assert TrajectoryDataset.load(tmp_path / "s.npz").frames is None


def test_a_cached_dataset_of_another_frame_size_is_refused(wall, frames_data, tmp_path):
    cfg = compose_config(["data.episodes=4", "data.episode_len=5"]).data
    frames_data.meta["config_hash"] = "aaaa"
    frames_data.save(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="frame_size: file has 16, expected 32"):
        load_or_collect(tmp_path / "d.npz", wall, {**cfg, "frame_size": 32}, "aaaa", True, progress=False)


def test_frame_history_and_training_windows_stack_frames_alike(wall, frames_data):
    data = frames_data
    history = FrameHistory(16, 3)
    wall.reset(data.states[1, 0].astype(np.float64))
    stacks = [history.reset(wall)]
    for t in range(3):
        wall.step(data.actions[1, t])
        stacks.append(history.push(wall))
    assert stacks[0].shape == (9, 16, 16)
    np.testing.assert_array_equal(stacks[0], np.concatenate([data.frames[1, 0]] * 3))  # the start repeated
    np.testing.assert_array_equal(stacks[3], np.concatenate(data.frames[1, 1:4]))  # oldest first

    model = build_world_model(compose_config(["world_model=pixel", "world_model.frame_size=16",
                                              "world_model.history=3"]).world_model, 4, 2)
    episodes = Episodes(model, data)
    for t in range(4):
        obs = episodes.observations(torch.tensor([1]), torch.tensor([t]))[0].numpy()
        np.testing.assert_array_equal(obs, stacks[t])


def test_goal_observation_renders_the_goal_and_puts_the_simulator_back(wall, frames_data):
    here = wall.reset(frames_data.states[0, 0].astype(np.float64))
    goal = frames_data.states[2, 4].astype(np.float64)
    obs = goal_observation(wall, goal, 16, 2)
    np.testing.assert_array_equal(obs, np.concatenate([frames_data.frames[2, 4]] * 2))
    np.testing.assert_array_equal(wall.get_state(), here)
