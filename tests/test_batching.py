"""Planning a batch is planning each problem alone: rows never interact (no batch-wide early stop,
no shared statistics), and MPC's masking of finished episodes leaves the others' plans as they
were. Planners without random draws show it with any generator; with random draws (GRASP's
noise, the samplers, GD's action noise, restarts) each problem draws from its own stream
(NoiseStreams, eval.noise_streams=per_episode)."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from conftest import compose_config
from grasp.planners import build
from grasp.eval.mpc import run_mpc
from grasp.planners.noise import NoiseStreams

#: how close a problem's plan alone and in a batch must be: float32 kernels for one row and for many
#: sum in other orders (1e-5 was exceeded by 2e-7 on one CPU); a row coupled to the others by a shared
#: noise stream moves by far more (checked below)
BATCH_ATOL = 5e-5

#: planner configs with every random draw switched off
DETERMINISTIC = {
    "grasp": dict(sigma_init=0.0, sigma_final=0.0, init_noise=0.0, sync="gd", sync_every=10),
    "latco": {},
    "gd": {},
}


def wall_model():
    cfg = compose_config(["world_model.hidden_dim=32", "world_model.depth=2"])
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.world_model, state_dim=4, action_dim=2).eval()
    return cfg, model


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_a_batch_plans_each_problem_as_if_alone(name):
    _, model = wall_model()
    gen = torch.Generator().manual_seed(1)
    start, goal = torch.rand(5, 4, generator=gen) - 0.5, torch.rand(5, 4, generator=gen) - 0.5
    planner = build(name, model, horizon=8, iterations=30, **DETERMINISTIC[name])
    together = planner.plan(start, goal)
    for b in range(5):
        alone = planner.plan(start[b : b + 1], goal[b : b + 1])
        torch.testing.assert_close(alone.actions[0], together.actions[b], atol=BATCH_ATOL, rtol=0)
        torch.testing.assert_close(alone.info["final_cost"][0], together.info["final_cost"][b], atol=1e-6, rtol=1e-5)


#: planners at their (random) defaults, made short
RANDOM = {
    "grasp": dict(sync_every=10),
    "grasp_restarts": dict(sync_every=10, restarts=3),
    "cem": {}, "icem": {}, "mppi": {},
    "gd": dict(lr=0.02, action_noise_init=0.3, action_noise_final=0.0, action_noise_schedule="linear"),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_with_per_problem_streams_random_planners_plan_each_problem_as_if_alone(name):
    _, model = wall_model()
    gen = torch.Generator().manual_seed(1)
    start, goal = torch.rand(4, 4, generator=gen) - 0.5, torch.rand(4, 4, generator=gen) - 0.5
    config = "grasp" if name.startswith("grasp") else name
    planner = build(config, model, horizon=8, iterations=20, **RANDOM[name])
    keys = [11, 22, 33, 44]
    together = planner.plan(start, goal, generator=NoiseStreams.from_seeds(keys))
    for b in (0, 3):
        alone = planner.plan(start[b : b + 1], goal[b : b + 1], generator=NoiseStreams.from_seeds(keys[b : b + 1]))
        torch.testing.assert_close(alone.actions[0], together.actions[b], atol=BATCH_ATOL, rtol=0)
    # a shared stream does couple the rows: the same problem alone gets other draws
    shared = planner.plan(start[3:], goal[3:], generator=torch.Generator().manual_seed(0))
    first = planner.plan(start, goal, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(shared.actions[0], first.actions[3], atol=BATCH_ATOL)
    # and another key gives another plan
    other = planner.plan(start[:1], goal[:1], generator=NoiseStreams.from_seeds([12]))
    assert not torch.allclose(other.actions[0], together.actions[0], atol=BATCH_ATOL)


def test_noise_streams_are_standard_normal_and_independent_of_the_batch():
    streams = NoiseStreams.from_seeds([5, 6, 7])
    draws = streams.normal((3, 40000))
    assert abs(float(draws.mean())) < 0.02 and abs(float(draws.std()) - 1) < 0.02
    assert 0.002 < float((draws.abs() > 3).float().mean()) < 0.0035  # the normal tail: 0.0027
    assert abs(float(torch.corrcoef(draws[:2])[0, 1])) < 0.03
    again = NoiseStreams.from_seeds([7]).normal((1, 40000))
    torch.testing.assert_close(again[0], draws[2], rtol=0, atol=0)
    assert not torch.equal(streams.normal((3, 5)), NoiseStreams.from_seeds([5, 6, 7]).normal((3, 5))), \
        "each draw advances the streams"
    with pytest.raises(ValueError, match="3 rows cannot fill shape"):
        streams.normal((2, 5))


def test_tolerance_stops_only_when_every_problem_is_within_it():
    """The early stop is batch-wide (one loop), so a solved problem keeps iterating beside an
    unsolved one; its plan must stay at least as good as when it stopped alone."""
    _, model = wall_model()
    start = torch.zeros(2, 4)
    with torch.no_grad():  # problem 0: where the initial (zero) actions already lead
        reached = model.rollout(start[:1], torch.zeros(1, 8, 2))[:, -1]
    goal = torch.cat([reached, torch.tensor([[0.4, 0.3, 0.0, 0.0]])])
    planner = build("gd", model, horizon=8, iterations=50, tolerance=1e-6)
    together = planner.plan(start, goal)
    alone = planner.plan(start[:1], goal[:1])
    assert alone.info["iterations"] < together.info["iterations"]
    assert together.info["final_cost"][0] <= alone.info["final_cost"][0] + 1e-6


@pytest.mark.parametrize("name, knobs", [("gd", {}), ("grasp", DETERMINISTIC["grasp"]),
                                         ("grasp", RANDOM["grasp"]), ("cem", {})], ids=["gd", "grasp", "grasp_noisy", "cem"])
def test_finished_episodes_leave_the_others_plans_unchanged(name, knobs):
    """Episode 0 starts on its goal and finishes at the first step; episodes 1 and 2 must get the
    same actions as when they run without it (random planners: per-episode noise keys)."""
    cfg, model = wall_model()
    starts = np.array([[0.5, 0.5, 0.0, 0.0], [-0.7, -0.6, 0.0, 0.0], [0.3, 0.5, 0.0, 0.0]])
    goals = np.array([[0.52, 0.5, 0.0, 0.0], [-0.3, -0.2, 0.0, 0.0], [0.7, 0.1, 0.0, 0.0]])
    planner = build(name, model, horizon=6, iterations=20, **knobs)
    tasks = [hydra.utils.instantiate(cfg.env) for _ in range(3)]
    keys = [101, 202, 303]
    try:
        three = run_mpc(tasks, planner, starts, goals, max_steps=6, replan_every=2, noise_keys=keys)
        two = run_mpc(tasks[1:], planner, starts[1:], goals[1:], max_steps=6, replan_every=2, noise_keys=keys[1:])
    finally:
        for task in tasks:
            task.close()
    assert three[0].steps < three[1].steps, "episode 0 finished first and was masked out"
    for masked, alone in zip(three[1:], two):
        np.testing.assert_allclose(np.stack(masked.actions), np.stack(alone.actions), atol=BATCH_ATOL)
        assert masked.final_distance == pytest.approx(alone.final_distance, abs=1e-6)


# ---- simulators stepped as a vector ---------------------------------------------------------------
def test_task_vector_steps_only_its_rows_as_the_simulators_would_alone():
    from grasp.envs.vector import TaskVector

    cfg = compose_config(["env=point_maze_umaze"])
    vector = TaskVector([hydra.utils.instantiate(cfg.env) for _ in range(3)])
    alone = [hydra.utils.instantiate(cfg.env) for _ in range(3)]
    rng = np.random.default_rng(0)
    starts = np.stack([vector.spec.sample_state(rng) for _ in range(3)])
    np.testing.assert_array_equal(vector.reset(starts), np.stack([t.reset(s) for t, s in zip(alone, starts)]))
    actions = rng.uniform(-1, 1, size=(2, vector.spec.action_dim))
    rows = np.array([0, 2])
    moved = vector.step(rows, actions)
    np.testing.assert_array_equal(moved, np.stack([alone[0].step(actions[0]), alone[2].step(actions[1])]))
    np.testing.assert_array_equal(vector.tasks[1].get_state(), alone[1].get_state())  # row 1 was masked out
    goals = moved.copy()
    assert vector.success(moved, goals).tolist() == [True, True]
    assert vector.distance(moved, goals[::-1]).shape == (2,)
    with pytest.raises(ValueError, match="one action per stepped row"):
        vector.step(rows, actions[:1])
    with pytest.raises(ValueError, match="one task"):
        TaskVector([vector.spec, hydra.utils.instantiate(compose_config(["env=wall"]).env)])
