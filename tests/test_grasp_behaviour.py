"""What docs/grasp_behaviour.md found, as tests that fail if it stops holding: why GRASP without
its sync misses goals on problems with a known answer, and that the shipped defaults fix it."""

from __future__ import annotations

import torch

from grasp.planners import build
from grasp.models.analytic import LinearWorldModel
from test_planners import final_distance, gen, problems

LIFTED_ONLY = dict(sync="none", sigma_init=0.0, sigma_final=0.0)


def double_integrator_problems(batch: int, seed: int):
    start, goal = problems(batch, 1.0, seed)
    zeros = torch.zeros(batch, 2)
    return torch.cat([start, zeros], 1), torch.cat([goal, zeros], 1)


def test_stop_grad_alone_sends_the_whole_goal_gap_to_the_last_action():
    # With alpha = 0 a virtual state gets gradient only as the target of the transition before
    # it, so the states relax forward onto the rollout of the actions and s_T = g reaches the
    # last action alone. Bounded, it cannot close a gap the earlier actions never saw.
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=4, distance=1.0, seed=0)
    knobs = dict(iterations=300, gamma_init=0.0, gamma_final=0.0, lr_actions=0.05, **LIFTED_ONLY)
    stopped = build("grasp", model, horizon=20, alpha=0.0, **knobs).plan(start, goal)
    assert (final_distance(model, start, stopped.actions, goal) > 0.3).all()
    last_gap = model.step(stopped.states[:, -1], stopped.actions[:, -1]) - goal
    assert (last_gap.norm(dim=-1) > 0.3).all()  # s_T = g is far from what the last transition reaches
    assert torch.isclose(stopped.actions[:, -1].abs().max(dim=-1).values, torch.tensor(1.0)).all()  # saturated
    # Full gradients (collocation) carry the goal back along the chain and solve it.
    full = build("grasp", model, horizon=20, alpha=1.0, **knobs).plan(start, goal)
    assert (final_distance(model, start, full.actions, goal) < 1e-2).all()


def test_a_constant_goal_weight_moves_the_optimum_off_the_goal():
    # gamma * sum_t ||F(s_t, a_t) - g||^2 rewards every step for being near g: with full
    # gradients that greedy pull competes with the exact plan instead of guiding it.
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=4, distance=1.0, seed=1)
    knobs = dict(iterations=300, alpha=1.0, lr_actions=0.05, gamma_schedule="constant", **LIFTED_ONLY)
    shaped = build("grasp", model, horizon=20, gamma_init=1.0, **knobs).plan(start, goal)
    plain = build("grasp", model, horizon=20, gamma_init=0.0, **knobs).plan(start, goal)
    shaped_error = final_distance(model, start, shaped.actions, goal)
    assert (shaped_error > 0.05).all() and (final_distance(model, start, plain.actions, goal) < 1e-2).all()


def test_double_integrator_needs_the_sync_under_stop_grad():
    # Actions reach positions only through velocity. Under stop-grad the lifted iterations
    # alone miss the goal (goal shaping only adds a greedy pull that cannot brake in time);
    # full gradients solve it, and so does the shooting sync of the shipped defaults.
    model = LinearWorldModel.double_integrator()
    start, goal = double_integrator_problems(4, seed=2)
    weights = [1.0, 1.0, 0.0, 0.0]
    lifted = build("grasp", model, horizon=30, iterations=300, state_weights=weights, **LIFTED_ONLY)
    assert (lifted.plan(start, goal, generator=gen(0)).info["final_cost"].sqrt() > 0.1).all()
    collocation = build("grasp", model, horizon=30, iterations=300, state_weights=weights, alpha=1.0,
                               gamma_init=0.0, lr_actions=0.05, **LIFTED_ONLY)
    assert collocation.plan(start, goal).info["final_cost"].sqrt().max() < 0.05
    default = build("grasp", model, horizon=30, state_weights=weights).plan(start, goal, generator=gen(0))
    assert default.info["final_cost"].sqrt().median() < 0.05


def test_shipped_defaults_beat_the_coarse_steps_they_replaced():
    # Before the study GRASP shipped lr_actions 0.05 and 10 sync steps at lr 0.05: Adam's
    # first steps move every action by ~lr, too coarse to land a 50-step plan.
    model = LinearWorldModel.unstable()
    start, goal = problems(batch=6, distance=1.0, seed=3)
    start = start / 2
    goal = start + (goal - start * 2)  # 1.0 away from a start near the origin
    coarse = build("grasp", model, horizon=50, lr_actions=0.05, sync_steps=10, sync_lr=0.05)
    new = build("grasp", model, horizon=50)
    old_error = coarse.plan(start, goal, generator=gen(0)).info["final_cost"].sqrt()
    new_error = new.plan(start, goal, generator=gen(0)).info["final_cost"].sqrt()
    assert new_error.median() < 0.05 and new_error.median() < 0.5 * old_error.median(), (new_error, old_error)
