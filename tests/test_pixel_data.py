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

SIZE = 32
#: where the wall's goal marker sits during these tests: frames must not show it
MARKER = np.array([0.5, 0.5, 0.0, 0.0])


@pytest.fixture(scope="module")
def wall():
    task = hydra.utils.instantiate(compose_config(["env=wall"]).env)
    task.set_goal(MARKER)
    yield task
    task.close()


@pytest.fixture(scope="module")
def frames_data(wall):
    return collect(wall, episodes=3, episode_len=5, policy="colored", correlation=0.8, seed=0, progress=False,
                   frame_size=SIZE)


def channels_first(image: np.ndarray) -> np.ndarray:
    return image.transpose(2, 0, 1)


def test_collected_frames_are_the_goalless_renders_of_the_states(wall, frames_data):
    data = frames_data
    assert data.frames.shape == (3, 6, 3, SIZE, SIZE) and data.frames.dtype == np.uint8
    assert data.meta["frame_size"] == SIZE and data.meta["frames_show_goal"] is False
    assert data.meta["frames_effects"] is False
    for e in range(3):
        for t in range(6):
            wall.reset(data.states[e, t].astype(np.float64))
            # exact: a frame shows the state the task reports, not the one a physics step before
            np.testing.assert_array_equal(channels_first(wall.render(SIZE, show_goal=False)), data.frames[e, t])
            np.testing.assert_array_equal(frame(wall, SIZE), data.frames[e, t])
    assert not np.array_equal(channels_first(wall.render(SIZE, show_goal=True)), data.frames[2, 5]), \
        "the goal marker does not show at all: the test proves nothing"
    assert not np.array_equal(data.frames[0, 0], data.frames[0, 5]), "the agent moved"


def test_frames_round_trip_compressed_and_split_aligned(frames_data, tmp_path):
    data = frames_data
    data.save(tmp_path / "d.npz")
    raw = data.frames.nbytes + data.states.nbytes + data.actions.nbytes
    assert (tmp_path / "d.npz").stat().st_size < raw
    again = TrajectoryDataset.load(tmp_path / "d.npz")
    assert again.frames.dtype == np.uint8 and again.meta == data.meta
    for name in ("frames", "states", "actions"):
        np.testing.assert_array_equal(getattr(again, name), getattr(data, name))
    train, val = again.split(1 / 3)
    np.testing.assert_array_equal(train.frames, data.frames[:2])
    np.testing.assert_array_equal(train.states, data.states[:2])
    np.testing.assert_array_equal(val.frames, data.frames[2:])
    np.testing.assert_array_equal(val.states, data.states[2:])


def test_a_state_dataset_round_trips_without_frames(wall, tmp_path):
    state_only = collect(wall, episodes=2, episode_len=3, policy="uniform", correlation=0.0, seed=0, progress=False)
    assert state_only.frames is None and state_only.meta["frame_size"] is None
    state_only.save(tmp_path / "s.npz")
    again = TrajectoryDataset.load(tmp_path / "s.npz")
    assert again.frames is None and again.meta == state_only.meta
    np.testing.assert_array_equal(again.states, state_only.states)
    assert all(part.frames is None for part in again.split(0.5))
    with pytest.raises(ValueError, match="dataset has no frames"):
        Episodes(pixel_model(2), again)
    with pytest.raises(ValueError, match="data.frame_size=0"):
        collect(wall, episodes=1, episode_len=1, policy="uniform", correlation=0.0, seed=0, progress=False,
                frame_size=0)


def pixel_model(history: int):
    cfg = compose_config(["world_model=pixel", f"world_model.frame_size={SIZE}", f"world_model.history={history}"])
    return build_world_model(cfg.world_model, 4, 2)


def every_stack(data: TrajectoryDataset, history: int) -> np.ndarray:
    """The training windows' observation at every (episode, step): (N, L+1, history * 3, S, S)."""
    n, steps = data.frames.shape[:2]
    episode, time = torch.meshgrid(torch.arange(n), torch.arange(steps), indexing="ij")
    return Episodes(pixel_model(history), data).observations(episode, time).numpy()


def test_observations_stack_each_step_with_its_past_oldest_first(frames_data):
    frames = frames_data.frames
    np.testing.assert_array_equal(every_stack(frames_data, 1), frames.reshape(3, 6, 3, SIZE, SIZE))
    obs = every_stack(frames_data, 2)
    assert obs.shape == (3, 6, 6, SIZE, SIZE) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[:, 0, :3], frames[:, 0])  # the first frame repeated before the start
    np.testing.assert_array_equal(obs[:, 0, 3:], frames[:, 0])
    np.testing.assert_array_equal(obs[:, 1:, :3], frames[:, :-1])
    np.testing.assert_array_equal(obs[:, 1:, 3:], frames[:, 1:])
    three = every_stack(frames_data, 3)
    for t in range(6):
        past = [frames[:, max(t - k, 0)] for k in (2, 1, 0)]
        np.testing.assert_array_equal(three[:, t], np.concatenate(past, axis=1))


def test_a_cached_dataset_of_another_frame_size_is_refused(wall, frames_data, tmp_path):
    cfg = compose_config(["env=wall", "data.episodes=3", "data.episode_len=5"]).data
    frames_data.meta["config_hash"] = "aaaa"
    frames_data.save(tmp_path / "d.npz")
    with pytest.raises(ValueError, match=f"frame_size: file has {SIZE}, expected 16"):
        load_or_collect(tmp_path / "d.npz", wall, {**cfg, "frame_size": 16}, "aaaa", True, progress=False)
    with pytest.raises(ValueError, match=f"frame_size: file has {SIZE}, expected None"):
        load_or_collect(tmp_path / "d.npz", wall, cfg, "aaaa", True, progress=False)
    again = load_or_collect(tmp_path / "d.npz", wall, {**cfg, "frame_size": SIZE}, "aaaa", True, progress=False)
    np.testing.assert_array_equal(again.frames, frames_data.frames)
    # frame datasets from before frames left out the goal marker, and shadows and reflections
    for style in ("frames_show_goal", "frames_effects"):
        meta = {k: v for k, v in frames_data.meta.items() if k != style}
        old = TrajectoryDataset(frames_data.states, frames_data.actions, meta, frames_data.frames)
        old.save(tmp_path / "old.npz")
        with pytest.raises(ValueError, match=f"{style}: file has None, expected False"):
            load_or_collect(tmp_path / "old.npz", wall, {**cfg, "frame_size": SIZE}, "aaaa", True, progress=False)


def test_frame_history_and_training_windows_stack_frames_alike(wall, frames_data):
    data = frames_data
    history = FrameHistory(SIZE, 3)
    with pytest.raises(RuntimeError, match="before reset"):
        history.push(wall)
    wall.reset(data.states[1, 0].astype(np.float64))
    stacks = [history.reset(wall)]
    for t in range(4):
        wall.step(data.actions[1, t])
        stacks.append(history.push(wall))
    assert stacks[0].shape == (9, SIZE, SIZE) and stacks[0].dtype == np.uint8
    np.testing.assert_array_equal(stacks[0], np.concatenate([data.frames[1, 0]] * 3))  # the start repeated
    np.testing.assert_array_equal(stacks[3], np.concatenate(data.frames[1, 1:4]))  # oldest first, current last
    np.testing.assert_array_equal(np.stack(stacks), every_stack(data, 3)[1, :5])  # planning sees training's stacks
    with pytest.raises(ValueError, match="world_model.history=0"):
        FrameHistory(SIZE, 0)


def test_goal_observation_renders_the_goal_and_puts_the_simulator_back(wall, frames_data):
    here = wall.reset(frames_data.states[0, 0].astype(np.float64))
    goal = frames_data.states[2, 4].astype(np.float64)
    obs = goal_observation(wall, goal, SIZE, 2)
    assert obs.shape == (6, SIZE, SIZE) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, np.concatenate([frames_data.frames[2, 4]] * 2))  # no goal marker
    np.testing.assert_array_equal(wall.get_state(), here)
