"""Sharded collection: shards on their own random streams, collected by worker processes, give data
that depend on the number of shards only; one shard is the one stream of the datasets before."""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import TINY, compose_config, resolved, run_cli
from grasp.config import check_config, instantiate_checked
from grasp.errors import ConfigError
from grasp.keys import evaluation_key
from grasp.train.dataset import TrajectoryDataset, collect, collect_shards

SIZES = {"episodes": 7, "episode_len": 6, "policy": "colored", "correlation": 0.8, "seed": 3}


@pytest.fixture
def wall():
    env = OmegaConf.to_container(compose_config().env, resolve=True)
    make_task = partial(instantiate_checked, env, "env")
    task = make_task()
    yield task, make_task
    task.close()


def sharded(wall, shards, workers):
    task, make_task = wall
    return collect_shards(task, make_task, shards=shards, workers=workers, progress=False, **SIZES)


def test_the_data_depend_on_the_shards_not_on_the_workers(wall):
    serial, pooled = sharded(wall, 3, 1), sharded(wall, 3, 2)  # the pool: real spawned processes
    assert np.array_equal(serial.states, pooled.states) and np.array_equal(serial.actions, pooled.actions)
    assert serial.states.shape == (7, 7, wall[0].state_dim)
    assert pooled.meta["shards"] == 3 and pooled.meta["episodes"] == 7 and pooled.meta["seed"] == 3
    assert not np.array_equal(sharded(wall, 2, 1).states, serial.states)


def test_each_shard_is_its_own_stream_spawned_from_the_seed(wall):
    task, _ = wall
    data = sharded(wall, 3, 1)  # shards of 3, 2, 2 episodes
    args = {k: v for k, v in SIZES.items() if k not in ("episodes", "seed")}
    second = collect(task, episodes=2, seed=np.random.SeedSequence(3, spawn_key=(1,)), progress=False, **args)
    assert np.array_equal(data.states[3:5], second.states) and np.array_equal(data.actions[3:5], second.actions)
    # the statistics are the whole dataset's, not a shard's
    assert data.meta["stats"]["state_mean"] == pytest.approx(data.states.reshape(-1, task.state_dim).mean(0))


def test_one_shard_is_the_one_stream_of_before(wall):
    task, _ = wall
    assert np.array_equal(sharded(wall, 1, 2).states, collect(task, progress=False, **SIZES).states)


def test_shards_change_the_data_key_only_when_set_and_workers_never(tmp_path):
    def keys(*extra):
        cfg = compose_config([*TINY, f"paths.root_dir={tmp_path}", *extra])
        job = resolved(cfg)
        return job.data_key, job.model_key, evaluation_key(cfg, "gd", "")

    plain = keys()
    assert keys("data.shards=1") == plain == keys("data.workers=2")
    assert keys("data.shards=2")[0] != plain[0]
    assert keys("data.shards=2", "data.workers=1") == keys("data.shards=2", "data.workers=2")


@pytest.mark.parametrize("override, allowed", [
    ("data.shards=0", "an integer from 1 to data.episodes (20)"),
    ("data.shards=21", "an integer from 1 to data.episodes (20)"),
    ("data.workers=0", "null (one per shard, at most one per CPU) or an integer >= 1"),
])
def test_bad_shards_or_workers_name_the_key(tmp_path, override, allowed):
    with pytest.raises(ConfigError, match=rf"'{override.split('=')[0]}' = .*allowed {re.escape(allowed)}$"):
        check_config(compose_config([*TINY, f"paths.root_dir={tmp_path}", override]))


def test_the_runner_collects_its_shards_in_worker_processes(tmp_path):
    proc = run_cli([*TINY, "stages=[collect]", "data.shards=2", "data.workers=2", f"paths.root_dir={tmp_path}"],
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = (tmp_path / "outputs" / "cache" / "data" / "wall").glob("*.npz")
    data = TrajectoryDataset.load(path)
    assert data.meta["shards"] == 2 and data.states.shape[0] == 20


def test_random_steps_draw_whole_model_steps_uniformly_and_zero_draws_nothing():
    """Push-T with stacked actions: with random_steps=1 every model step's five env actions are
    i.i.d. uniform (their spread within a step is the uniform's, more than the scripted pusher's);
    at 0.5 the mean spread lies halfway; 0 is the scripted policy's data exactly."""
    import hydra

    task = hydra.utils.instantiate(compose_config(["env=pusht", "actions=stacked5"]).env)
    try:
        def run(random_steps):
            data = collect(task, 40, 8, "scripted", 0.8, 0, progress=False, random_steps=random_steps)
            return data, float(data.actions.reshape(-1, 5, 2).std(axis=1).mean())

        (scripted, low), (uniform, high), (_, half) = run(0.0), run(1.0), run(0.5)
        assert high == pytest.approx(np.sqrt(1 / 3) * np.sqrt(4 / 5), abs=0.03)  # 5 uniform draws on [-1, 1]
        assert low < high - 0.1
        assert half == pytest.approx((low + high) / 2, abs=0.04)
        assert np.array_equal(scripted.states, collect(task, 40, 8, "scripted", 0.8, 0, progress=False).states)
        assert uniform.meta["random_steps"] == 1.0 and "random_steps" not in scripted.meta
    finally:
        task.close()


def test_random_steps_change_the_data_key_only_when_set(tmp_path):
    def key(*extra):
        return resolved(compose_config([*TINY, f"paths.root_dir={tmp_path}", *extra])).data_key

    assert key("data.random_steps=0") == key() != key("data.random_steps=0.2")
    with pytest.raises(ConfigError, match=r"'data.random_steps' = 1.5 is invalid: allowed a probability in \[0, 1\]"):
        check_config(compose_config([*TINY, f"paths.root_dir={tmp_path}", "data.random_steps=1.5"]))
