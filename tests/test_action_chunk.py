"""Stacked actions (env.action_chunk): a model step executes its k env actions in order, bounds and
horizons follow k, data policies act once per env step, and every cache key includes k."""

from __future__ import annotations

import hydra
import numpy as np
import pytest

from conftest import compose_config, resolved
from grasp.errors import ConfigError
from grasp.envs.exploration import policy_steps
from grasp.envs.pusht import PushTTask
from grasp.envs.wall import WallTask
from grasp.job import resolve
from grasp.train.dataset import collect

ENVS = ["wall", "pusht", "point_maze_umaze", "reacher", "point_mass"]


def make(env: str, **overrides):
    cfg = compose_config([f"env={env}", *(f"env.{k}={v}" for k, v in overrides.items())])
    return hydra.utils.instantiate(cfg.env)


@pytest.mark.parametrize("env", ENVS)
def test_a_chunked_step_executes_its_sub_actions_in_order(env):
    chunked, plain = make(env, action_chunk=3), make(env)
    try:
        rng = np.random.default_rng(0)
        start = chunked.sample_state(rng)
        assert chunked.action_dim == 3 * plain.action_dim == 3 * chunked.env_action_dim
        np.testing.assert_array_equal(chunked.action_low, np.tile(plain.action_low, 3))
        np.testing.assert_array_equal(chunked.action_high, np.tile(plain.action_high, 3))
        assert chunked.env_steps_per_model_step == 3 * plain.env_steps_per_model_step
        subs = rng.uniform(plain.action_low, plain.action_high, (3, plain.action_dim))
        chunked.reset(start)
        visited = chunked.step_chunk(subs.reshape(-1))  # layout [a0x, a0y, a1x, a1y, ...]
        plain.reset(start)
        replayed = np.stack([plain.step(sub) for sub in subs])  # a fresh simulator, one env step each
        np.testing.assert_array_equal(visited, replayed)
        # the reverse order ends elsewhere: order matters and is kept
        chunked.reset(start)
        assert not np.allclose(chunked.step(subs[::-1].reshape(-1)), replayed[-1])
    finally:
        chunked.close()
        plain.close()


@pytest.mark.parametrize("env", ["wall", "pusht"])
def test_a_chunk_of_equal_actions_is_the_held_action_of_frame_skip_times_k(env):
    base = make(env).frame_skip
    chunked, held = make(env, action_chunk=4), make(env, frame_skip=4 * base)
    try:
        rng = np.random.default_rng(1)
        start = chunked.sample_state(rng)
        action = rng.uniform(-1, 1, held.action_dim)
        chunked.reset(start)
        held.reset(start)
        np.testing.assert_array_equal(chunked.step(np.tile(action, 4)), held.step(action))
        if env == "pusht":  # its env step is the original's 0.1 s, whatever frame_skip makes of it
            assert chunked.env_steps_per_model_step == held.env_steps_per_model_step == 4
    finally:
        chunked.close()
        held.close()


def test_a_wrong_action_length_and_a_bad_chunk_are_one_clear_error():
    task = WallTask(action_chunk=2)
    with pytest.raises(ValueError, match=r"shape \(4,\).*action_chunk=2"):
        task.step(np.zeros(2))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="env.action_chunk"):
            WallTask(action_chunk=bad)
    cfg = compose_config(["env.action_chunk=0"])
    with pytest.raises(ConfigError, match="env.action_chunk"):
        resolve(cfg)


def test_the_scripted_pusher_is_asked_once_per_env_step():
    """Stacking leaves the data policy's behaviour as it was: the same rng gives the same env
    actions and states whether they are grouped in chunks of 5 or not."""
    chunked, plain = PushTTask(action_chunk=5), PushTTask()
    try:
        start = plain.sample_state(np.random.default_rng(2))
        chunked.reset(start)
        plain.reset(start)
        stacked = list(policy_steps(chunked, np.random.default_rng(3), 4, "scripted", 0.8))
        single = list(policy_steps(plain, np.random.default_rng(3), 20, "scripted", 0.8))
        np.testing.assert_array_equal(np.concatenate([a for a, _ in stacked]), np.concatenate([a for a, _ in single]))
        np.testing.assert_array_equal(np.stack([s for _, s in stacked]), np.stack([s for _, s in single])[4::5])
        assert len({tuple(a) for a, _ in single[:5]}) > 1, "sub-actions of a chunk vary"
    finally:
        chunked.close()
        plain.close()


def test_noise_data_has_sub_actions_that_vary_within_a_chunk_and_replays_exactly():
    task = WallTask(action_chunk=5)
    data = collect(task, episodes=3, episode_len=4, policy="colored", correlation=0.5, seed=0, progress=False)
    assert data.actions.shape == (3, 4, 10) and data.meta["action_chunk"] == 5
    subs = data.actions.reshape(3, 4, 5, 2)
    assert np.abs(np.diff(subs, axis=2)).max() > 0.05, "colored noise is drawn per env step"
    replay = WallTask()
    replay.reset(data.states[1, 0].astype(np.float64))
    for t in range(4):
        for sub in subs[1, t]:
            state = replay.step(sub)
        np.testing.assert_allclose(state, data.states[1, t + 1], rtol=1e-6, atol=1e-6)


def test_dataset_model_and_protocol_keys_include_the_chunk():
    plain, chunked = (resolved(compose_config(o)) for o in ([], ["env.action_chunk=5"]))
    assert plain.data_key != chunked.data_key and plain.model_key != chunked.model_key
    assert plain.protocol_path != chunked.protocol_path


def test_the_paper_preset_runs_either_action_setting_with_one_override():
    held = compose_config(["experiment=paper_long_horizon"]).env
    stacked = compose_config(["experiment=paper_long_horizon", "actions=stacked5"]).env
    assert (held.frame_skip, held.action_chunk) == (100, 1)
    assert (stacked.frame_skip, stacked.action_chunk) == (20, 5)
    a, b = hydra.utils.instantiate(held), hydra.utils.instantiate(stacked)
    try:
        assert a.env_steps_per_model_step == b.env_steps_per_model_step == 5
        assert (a.action_dim, b.action_dim) == (2, 10)
    finally:
        a.close()
        b.close()


def test_videos_of_stacked_actions_show_every_env_step(tmp_path):
    import imageio
    import torch

    from grasp.envs.observe import env_step_frames, frame
    from grasp.eval.pictures import episode_pictures
    from grasp.models.pixel import PixelWorldModel
    from grasp.eval.mpc import EpisodeOutcome

    task = WallTask(action_chunk=3)
    try:
        start = task.sample_state(np.random.default_rng(4))
        actions = np.random.default_rng(5).uniform(-1, 1, (2, 6))
        frames = env_step_frames(task, start, actions, 16)
        assert frames.shape == (6, 3, 16, 16)
        replay = WallTask()
        replay.reset(start)
        for sub in actions.reshape(6, 2)[:4]:
            replay.step(sub)
        np.testing.assert_array_equal(frames[3], frame(replay, 16))
        replay.close()
        model = PixelWorldModel(4, 6, latent_dim=4, frame_size=16, history=1, channels=2, hidden_dim=8).eval()
        outcome = EpisodeOutcome(frames=[frames[2], frames[5]], predicted=[torch.zeros(4), torch.ones(4)])
        _, videos = episode_pictures(model, outcome, tmp_path, "episode0", env_frames=frames)
        assert imageio.get_reader(videos["pictures/episode0_video"]).count_frames() == 6
        _, videos = episode_pictures(model, outcome, tmp_path, "model_steps")
        assert imageio.get_reader(videos["pictures/model_steps_video"]).count_frames() == 2
    finally:
        task.close()
