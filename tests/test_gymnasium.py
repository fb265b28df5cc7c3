"""Every task as a gymnasium goal-conditioned env (grasp.envs.gymnasium_env): gymnasium's own
checker on each registered id, and the goal dict, reward, success and stacked actions against the
task underneath."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import grasp.envs  # noqa: F401  (registers the ids)
from grasp.envs.gymnasium_env import ENVS, make_task


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_every_registered_task_passes_gymnasiums_checker(env_id):
    env = gymnasium.make(env_id, render_mode="rgb_array", render_size=32)
    try:
        check_env(env.unwrapped, skip_render_check=False)
        assert env.spec.max_episode_steps == ENVS[env_id][1]
        obs, info = env.reset(seed=3)
        again, _ = env.reset(seed=3)
        assert all(np.array_equal(obs[k], again[k]) for k in obs), "a seed fixes the start and goal"
        assert env.render().shape == (32, 32, 3)
    finally:
        env.close()


def test_the_goal_dict_reward_and_success_are_the_tasks():
    env = gymnasium.make("grasp/Wall-v0").unwrapped
    task = make_task("wall")
    try:
        start, goal = task.sample_start_goal(np.random.default_rng(0))
        obs, info = env.reset(options={"start": start, "goal": goal})
        assert np.array_equal(obs["observation"], task.reset(start))
        assert np.array_equal(obs["desired_goal"], goal[list(task.goal_dims)])
        action = np.array([0.5, -0.25], dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        state = task.step(action.astype(np.float64))
        assert np.allclose(obs["observation"], state) and np.array_equal(obs["achieved_goal"], state[list(task.goal_dims)])
        assert reward == pytest.approx(-task.distance(state, goal)) and not truncated
        assert terminated == info["is_success"] == bool(task.success(state, goal))
        # hindsight relabelling: the batched reward of achieved/desired goals is the task's distance
        achieved, desired = np.random.default_rng(1).uniform(-1, 1, (2, 5, 2))
        assert np.allclose(env.compute_reward(achieved, desired, {}), -np.linalg.norm(achieved - desired, axis=-1))
        # the goal as start: standing still solves it at once
        obs, _ = env.reset(options={"start": start, "goal": start})
        _, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
        assert terminated and info["is_success"] and reward > -task.success_threshold
    finally:
        env.close()
        task.close()


def test_stacked_actions_make_one_step_of_several_env_steps():
    env = gymnasium.make("grasp/PushT-v0", action_chunk=5).unwrapped
    task = make_task("pusht", action_chunk=5)
    try:
        assert env.action_space.shape == (10,)
        obs, _ = env.reset(seed=0)
        task.reset(obs["observation"])
        action = np.random.default_rng(0).uniform(-1, 1, 10).astype(np.float32)
        obs, *_ = env.step(action)
        for piece in action.astype(np.float64).reshape(5, 2):
            state = task.env_step(piece)
        assert np.allclose(obs["observation"], state)
    finally:
        env.close()
        task.close()
