"""Each GRASP knob, each baseline and each preset does what its config comment claims, built
through the real conf/planner/*.yaml (composed by Hydra, so config drift breaks a test)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import compose_config, planner_config
from grasp.config import config_options
from grasp.errors import ConfigError
from grasp.planners import build
from grasp.models.analytic import LinearWorldModel
from grasp.models.mlp import MLPWorldModel
from grasp.planners.base import WarmStart
from grasp.planners.grasp import grasp_energy
from grasp.planners.sampling import colored_noise
from grasp.planners.schedules import schedule_values
from test_planners import final_distance, gen, problems

PLANNERS = config_options("planner")
DETERMINISTIC = dict(sigma_init=0.0, sigma_final=0.0, init_noise=0.0)


def double_integrator_problems(batch: int, distance: float, seed: int):
    start, goal = problems(batch, distance, seed)
    zeros = torch.zeros(batch, 2)
    return torch.cat([start, zeros], 1), torch.cat([goal, zeros], 1)


# ---- every planner and preset runs through its YAML --------------------------------------------
def test_the_planner_group_holds_the_suite_and_the_ablations():
    assert set(PLANNERS) == {"grasp", "grasp_long", "grasp_mpc", "gd", "cem", "icem", "mppi", "latco"}
    assert {"full", "no_noise", "no_stopgrad", "no_goal", "no_sync", "no_stopgrad_no_goal"} <= set(config_options("ablation"))


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_config_plans_a_tiny_problem(name):
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=2, distance=0.3, seed=0)
    planner = build(name, model, horizon=5, iterations=4, **({"sync_every": 2} if "sync_every" in
                                                                    _knobs(name) else {}))
    result = planner.plan(start, goal, generator=gen(0))
    assert result.actions.shape == (2, 5, 2) and result.info["final_cost"].shape == (2,)
    assert torch.isfinite(result.actions).all() and result.info["iterations"] >= 1
    # the plan improves on doing nothing
    idle = final_distance(model, start, torch.zeros(2, 5, 2), goal)
    assert (final_distance(model, start, result.actions, goal) < idle).all()


def _knobs(name: str) -> set[str]:
    return set(planner_config(name).keys())


@pytest.mark.parametrize("row,knobs", [
    ("no_noise", {"sigma_init": 0.0, "sigma_final": 0.0}),
    ("no_stopgrad", {"alpha": 1.0}),
    ("no_goal", {"gamma_init": 0.0, "gamma_final": 0.0}),
    ("no_sync", {"sync": "none"}),
    ("no_stopgrad_no_goal", {"alpha": 1.0, "gamma_init": 0.0, "gamma_final": 0.0}),
    ("full", {}),
])
def test_ablation_rows_override_only_their_knobs(row, knobs):
    base, ablated = compose_config(["planner=grasp"]).planner, compose_config(["planner=grasp", f"ablation={row}"]).planner
    differing = {k for k in base if base[k] != ablated[k]}
    assert differing == {k for k, v in knobs.items() if base[k] != v}
    assert all(ablated[k] == v for k, v in knobs.items())


# ---- GRASP knobs ------------------------------------------------------------------------------------
def test_state_noise_touches_only_the_virtual_states():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=3, distance=1.0, seed=1)
    start_copy, goal_copy = start.clone(), goal.clone()
    # lr 0: the states move by the noise alone, so its size is known: sigma * sqrt(iterations)
    planner = build("grasp", model, horizon=12, iterations=50, lr_states=0.0, lr_actions=0.0,
                           sigma_init=0.2, sigma_final=0.2, sigma_schedule="constant", sync="none")
    result = planner.plan(start, goal, generator=gen(0))
    assert torch.equal(start, start_copy) and torch.equal(goal, goal_copy)
    line = planner.initial_states(start, goal, torch.zeros(3, 12, 2))
    drift = (result.states - line).std().item()
    assert drift == pytest.approx(0.2 * math.sqrt(50), rel=0.15)
    assert torch.equal(result.actions, torch.zeros(3, 12, 2))  # noise never reaches the actions


def test_every_schedule_is_recorded_as_used():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=2, distance=1.0, seed=2)
    planner = build("grasp", model, horizon=10, iterations=30, sigma_init=0.04, sigma_final=0.0,
                           sigma_schedule="cosine", gamma_init=3.0, gamma_final=0.1, gamma_schedule="exp",
                           dynamics_weight_init=1.0, dynamics_weight_final=10.0, dynamics_weight_schedule="linear",
                           sync="none")
    info = planner.plan(start, goal, generator=gen(0)).info
    for key, spec in (("sigma", ("cosine", 0.04, 0.0)), ("gamma", ("exp", 3.0, 0.1)),
                      ("dynamics_weight", ("linear", 1.0, 10.0))):
        torch.testing.assert_close(info[key], torch.tensor(schedule_values(*spec, 30)))
        assert info[key][0] == pytest.approx(spec[1]) and info[key][-1] == pytest.approx(spec[2], abs=1e-7)
    expected = info["dynamics_weight"][:, None] * info["dynamics"] + info["gamma"][:, None] * info["goal_term"]
    torch.testing.assert_close(info["loss"], expected)


@pytest.mark.parametrize("sync", ["gd", "cem"])
def test_each_sync_lowers_the_true_rollout_cost(sync):
    model = LinearWorldModel.double_integrator(dim=2)
    start, goal = double_integrator_problems(4, 0.5, seed=5)
    planner = build("grasp", model, horizon=30, iterations=20, sync=sync, sync_every=10, sync_steps=20,
                           sync_lr=0.1, sync_samples=128, sync_std=0.2, **DETERMINISTIC)
    info = planner.plan(start, goal, generator=gen(0)).info
    assert info["sync_cost"].shape == (2, 4) and info["sync_iteration"].tolist() == [9, 19]
    assert (info["sync_cost"] <= info["sync_cost_before"]).all()
    assert (info["sync_cost"] < 0.8 * info["sync_cost_before"]).any()
    torch.testing.assert_close(info["final_cost"], info["sync_cost"][-1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["grasp", "gd", "mppi"])
def test_restarts_never_return_a_worse_plan_than_the_first(name):
    model = LinearWorldModel.double_integrator(dim=2)
    start, goal = double_integrator_problems(3, 0.8, seed=6)
    knobs = dict(iterations=20)
    if name == "grasp":
        knobs.update(sync_every=10, **DETERMINISTIC)
    single = build(name, model, horizon=20, **knobs).plan(start, goal, generator=gen(0))
    multi = build(name, model, horizon=20, restarts=4, restart_noise=0.5, **knobs).plan(
        start, goal, generator=gen(0))
    info = multi.info
    assert multi.actions.shape == (3, 20, 2) and info["restart_costs"].shape == (4, 3)
    torch.testing.assert_close(info["final_cost"], info["restart_costs"].min(dim=0).values)
    torch.testing.assert_close(info["restart_cost_std"], info["restart_costs"].std(dim=0, correction=0))
    assert (info["restart_cost_std"] > 0).all()  # the restarts really differ
    if name != "mppi":  # deterministic optimisers: restart 0 is the single plan, so the best is no worse
        torch.testing.assert_close(info["restart_costs"][0], single.info["final_cost"], atol=1e-6, rtol=1e-4)
        assert (info["final_cost"] <= single.info["final_cost"] * (1 + 1e-4) + 1e-7).all()
    torch.testing.assert_close(info["final_cost"], final_distance_sq(model, start, multi.actions, goal),
                               atol=1e-5, rtol=1e-4)


def final_distance_sq(model, start, actions, goal):
    return final_distance(model, start, actions, goal) ** 2


def test_horizon_curriculum_grows_to_the_full_horizon():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=4, distance=1.0, seed=7)
    planner = build("grasp", model, horizon=40, iterations=90, curriculum=[0.25, 0.5], sync_every=30)
    assert planner.stage_horizons() == [10, 20, 40]
    result = planner.plan(start, goal, generator=gen(0))
    horizons = result.info["horizon"]
    assert horizons[:30].eq(10).all() and horizons[30:60].eq(20).all() and horizons[60:].eq(40).all()
    assert result.actions.shape == (4, 40, 2) and result.states.shape == (4, 39, 2)
    assert (final_distance(model, start, result.actions, goal) < 0.2).all()


def test_chunked_gradients_equal_unchunked():
    torch.manual_seed(0)
    model = MLPWorldModel(state_dim=4, action_dim=2, hidden_dim=32, depth=2)  # nonlinear F
    start, goal = torch.randn(3, 4), torch.randn(3, 4)
    states0 = torch.randn(3, 16, 4)
    free0 = torch.randn(3, 17, 2).clamp(-1, 1)
    grads = []
    for chunk in (None, 5, 1):
        planner = build("grasp", model, horizon=17, alpha=0.3, chunk_size=chunk)
        states, free = states0.clone().requires_grad_(True), free0.clone().requires_grad_(True)
        terms = planner.accumulate_gradients(start, states, free, goal, gamma=0.7, dyn_weight=1.5)
        grads.append((states.grad, free.grad, *terms))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # and the whole plan follows
    plans = [build("grasp", model, horizon=17, iterations=25, chunk_size=c).plan(start, goal, generator=gen(1))
             for c in (None, 4)]
    torch.testing.assert_close(plans[0].actions, plans[1].actions, atol=1e-5, rtol=1e-5)


def test_state_clip_keeps_virtual_states_in_range():
    model = LinearWorldModel.single_integrator()
    start = torch.zeros(2, 2)
    goal = torch.full((2, 2), 0.5)
    far = torch.full((2, 19, 2), 5.0)  # a warm start far outside +-1
    planner = build("grasp", model, horizon=20, iterations=25, init="warm", state_clip=1.0)
    result = planner.plan(start, goal, warm_start=WarmStart(torch.zeros(2, 20, 2), far), generator=gen(0))
    assert result.states.abs().max() <= 1.0
    loose = build("grasp", model, horizon=20, iterations=25, init="warm")
    assert loose.plan(start, goal, warm_start=WarmStart(torch.zeros(2, 20, 2), far), generator=gen(0)
                      ).states.abs().max() > 1.0


def test_tanh_parameterisation_keeps_bounds_and_solves():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=3, distance=1.2, seed=8)
    for name in ("grasp", "gd", "latco"):
        planner = build(name, model, horizon=20, action_low=-0.8, action_high=0.8, action_param="tanh")
        actions = planner.plan(start, goal, generator=gen(0)).actions
        assert actions.abs().max() < 0.8
        assert (final_distance(model, start, actions, goal) < 0.1).all(), name


@pytest.mark.parametrize("init", ["interp", "zeros", "rollout", "warm"])
def test_virtual_state_inits(init):
    model = LinearWorldModel.single_integrator()
    start, goal = torch.zeros(2, 2), torch.ones(2, 2)
    warm_actions = torch.full((2, 8, 2), 0.5)
    warm_states = torch.randn(2, 7, 2, generator=gen(0))
    planner = build("grasp", model, horizon=8, init=init)
    states = planner.initial_states(start, goal, warm_actions, warm_states)
    expected = {
        "interp": (torch.arange(1, 8)[:, None] / 8).expand(7, 2).expand(2, 7, 2),
        "zeros": torch.zeros(2, 7, 2),
        "rollout": model.rollout(start, warm_actions)[:, :-1],
        "warm": warm_states,
    }[init]
    torch.testing.assert_close(states, expected)
    noisy = build("grasp", model, horizon=8, init=init, init_noise=0.1)
    assert (noisy.initial_states(start, goal, warm_actions, warm_states, gen(1)) - expected).std() > 0.05


def test_warm_start_off_ignores_the_previous_plan():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=2, distance=1.0, seed=9)
    warm = torch.full((2, 10, 2), -1.0)
    for name in ("grasp", "gd", "cem"):
        knobs = dict(iterations=10, **({"sync": "none"} if name == "grasp" else {}))
        off = build(name, model, horizon=10, warm_start=False, **knobs)
        on = build(name, model, horizon=10, **knobs)
        plain = off.plan(start, goal, generator=gen(0)).actions
        assert torch.equal(off.plan(start, goal, warm_start=warm, generator=gen(0)).actions, plain)
        assert not torch.equal(on.plan(start, goal, warm_start=warm, generator=gen(0)).actions, plain)


def test_tolerance_stops_early_once_every_plan_is_good_enough():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=3, distance=0.5, seed=10)
    grasp = build("grasp", model, horizon=10, iterations=300, eval_every=5, tolerance=1e-3)
    info = grasp.plan(start, goal, generator=gen(0)).info
    assert info["iterations"] < 300 and info["iterations"] % 5 == 0
    assert (info["final_cost"] <= 1e-3).all() and info["rollout_cost"].shape == (info["iterations"] // 5, 3)
    gd = build("gd", model, horizon=10, iterations=300, tolerance=1e-4).plan(start, goal).info
    assert gd["iterations"] < 300 and (gd["final_cost"] <= 1e-4).all()


def test_latco_is_grasp_with_noise_stopgrad_goal_and_sync_off():
    model = LinearWorldModel.double_integrator(dim=2)
    start, goal = double_integrator_problems(3, 0.6, seed=11)
    latco = build("latco", model, horizon=15, iterations=40)
    grasp = build("grasp", model, horizon=15, iterations=40, alpha=1.0, sigma_init=0.0, sigma_final=0.0,
                         gamma_init=0.0, gamma_final=0.0, sync="none", lr_actions=latco.lr_actions)
    a, b = latco.plan(start, goal, generator=gen(0)), grasp.plan(start, goal, generator=gen(5))
    assert torch.equal(a.actions, b.actions)
    assert "sync_cost" not in a.info and a.info["sigma"].eq(0).all() and a.info["gamma"].eq(0).all()


# ---- GRASP's energy ----------------------------------------------------------------------------------
def test_energy_over_a_span_is_a_slice_of_the_whole():
    torch.manual_seed(1)
    model = MLPWorldModel(state_dim=3, action_dim=2, hidden_dim=16, depth=2)
    s0, goal, states, actions = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 9, 3), torch.randn(2, 10, 2)
    whole = grasp_energy(model, s0, states, actions, goal)
    parts = [grasp_energy(model, s0, states, actions[:, lo:hi], goal, start=lo) for lo, hi in ((0, 1), (1, 7), (7, 10))]
    torch.testing.assert_close(torch.cat([p.pred for p in parts], 1), whole.pred)
    torch.testing.assert_close(sum(p.dynamics for p in parts), whole.dynamics)


# ---- baselines ---------------------------------------------------------------------------------------
def test_gd_action_noise_is_seeded_and_annealed():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=2, distance=1.0, seed=12)
    noisy = build("gd", model, horizon=10, iterations=20, action_noise_init=0.1, action_noise_final=0.0,
                         action_noise_schedule="linear")
    a, b, c = (noisy.plan(start, goal, generator=gen(s)) for s in (0, 0, 1))
    assert torch.equal(a.actions, b.actions) and not torch.equal(a.actions, c.actions)
    torch.testing.assert_close(a.info["action_noise"], torch.tensor(schedule_values("linear", 0.1, 0.0, 20)))


def test_colored_noise_is_unit_variance_and_correlated_in_time():
    white = colored_noise((3000, 20, 2), 0.0, gen(0), torch.device("cpu"))
    pink = colored_noise((3000, 20, 2), 2.0, gen(0), torch.device("cpu"))
    for x in (white, pink):
        assert x.shape == (3000, 20, 2) and x.std(dim=0).sub(1).abs().max() < 0.08
    lag1 = lambda x: (x[:, 1:] * x[:, :-1]).mean().item()  # noqa: E731
    assert abs(lag1(white)) < 0.03 and lag1(pink) > 0.6


def test_icem_shrinks_its_samples_and_keeps_elites():
    model = LinearWorldModel.single_integrator()
    planner = build("icem", model, horizon=8, samples=100, elites=10, sample_decay=2.0, keep_elites=0.5)
    assert [planner.sample_count(k) for k in range(4)] == [100, 50, 25, 20]
    start, goal = problems(batch=2, distance=0.5, seed=13)
    result = planner.plan(start, goal, generator=gen(0))
    assert (result.info["best_cost"].diff(dim=0) <= 0).all()
    torch.testing.assert_close(result.info["final_cost"], result.info["best_cost"][-1])  # returns the best seen
    assert (final_distance(model, start, result.actions, goal) < 0.05).all()


def test_mppi_temperature_interpolates_between_best_sample_and_average():
    model = LinearWorldModel.single_integrator()
    planner = build("mppi", model, horizon=4, temperature=1e-6)
    cost = torch.tensor([[3.0, 1.0, 2.0]])
    assert torch.allclose(planner.weights(cost), torch.tensor([[0.0, 1.0, 0.0]]))
    hot = build("mppi", model, horizon=4, temperature=1e6)
    assert torch.allclose(hot.weights(cost), torch.full((1, 3), 1 / 3))
    start, goal = problems(batch=3, distance=0.5, seed=14)
    result = build("mppi", model, horizon=10, iterations=10).plan(start, goal, generator=gen(0))
    assert (final_distance(model, start, result.actions, goal) < 0.1).all()


# ---- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,knobs,message", [
    ("grasp", dict(iterations=10, sync_every=20), "sync_every=20 is more than planner.iterations=10"),
    ("grasp", dict(sync="lbfgs"), "planner.sync='lbfgs': allowed values are none, gd, cem"),
    ("grasp", dict(curriculum=[0.5, 0.25]), "strictly increasing fractions"),
    ("grasp", dict(curriculum=[1.5]), "planner.curriculum=1.5"),
    ("grasp", dict(state_clip=-1.0), "planner.state_clip=-1.0"),
    ("grasp", dict(chunk_size=0), "planner.chunk_size=0"),
    ("grasp", dict(sync="none", tolerance=0.1), "tolerance needs the true rollout cost"),
    ("grasp", dict(action_param="sigmoid"), "allowed values are clamp, tanh"),
    ("grasp", dict(dynamics_weight_init=-1.0), "planner.dynamics_weight_init=-1.0"),
    ("grasp", dict(horizon=0), "planner.horizon=0"),
    ("grasp", dict(restarts=0), "planner.restarts=0"),
    ("gd", dict(action_noise_schedule="step"), "planner.action_noise_schedule='step'"),
    ("gd", dict(action_low=[-1.0, -1.0, -1.0]), "action_low needs 1 or 2 entries"),
    ("cem", dict(action_low=1.0, action_high=0.0), "action_low < action_high"),
    ("icem", dict(keep_elites=2.0), "planner.keep_elites=2.0"),
    ("mppi", dict(temperature=0.0), "planner.temperature=0.0"),
    ("grasp", dict(state_weights=[1.0, -1.0]), "planner.state_weights=-1.0"),
])
def test_bad_knobs_fail_with_one_clear_message(name, knobs, message):
    model = LinearWorldModel.single_integrator()
    horizon = knobs.pop("horizon", 6)
    with pytest.raises(ConfigError, match="config section 'planner'") as err:
        build(name, model, horizon=horizon, **knobs)
    assert message in str(err.value), str(err.value)


def test_mismatched_dims_fail_before_planning():
    model = LinearWorldModel.single_integrator()
    planner = build("grasp", model, horizon=6, sync="none")
    with pytest.raises(ValueError, match=r"state0 and goal of shape \(B, 2\)"):
        planner.plan(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"warm_start states must have shape \(2, 5, 2\)"):
        planner.plan(torch.zeros(2, 2), torch.ones(2, 2), warm_start=WarmStart(torch.zeros(2, 6, 2), torch.zeros(2, 6, 2)))


def test_snapshots_keep_the_virtual_states_of_evenly_spaced_iterations():
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=3, distance=0.3, seed=0)
    planner = build("grasp", model, horizon=6, iterations=10, snapshots=3, sync="none", **DETERMINISTIC)
    result = planner.plan(start, goal, generator=gen(0))
    assert result.info["snapshot_iteration"] == [0, 4, 9]
    first, middle, last = result.info["snapshots"]
    assert first.shape == (3, 5, 2)
    torch.testing.assert_close(last, result.states.cpu())  # the last iteration's states are the plan's
    assert not torch.equal(first, last), "the states moved between the first and the last snapshot"
    # restarts keep each problem's best restart's snapshots
    restarted = build("grasp", model, horizon=6, iterations=10, snapshots=2, sync="none", restarts=3,
                             **DETERMINISTIC).plan(start, goal, generator=gen(0))
    torch.testing.assert_close(restarted.info["snapshots"][-1], restarted.states.cpu())
    assert "snapshots" not in build("grasp", model, horizon=6, iterations=10, sync="none").plan(start, goal).info


@pytest.mark.parametrize("name", ["gd", "cem", "mppi"])
def test_shooting_planners_snapshot_the_predicted_states_of_their_current_plan(name):
    """Planners without virtual states show the model's rollout of the plan they hold: the last
    snapshot is the rollout of the returned actions (GD on a linear model improves every step,
    so its best iterate is its last)."""
    model = LinearWorldModel.single_integrator()
    start, goal = problems(batch=3, distance=0.3, seed=0)
    knobs = {"lr": 0.02} if name == "gd" else {}
    planner = build(name, model, horizon=6, iterations=5, snapshots=3, **knobs)
    result = planner.plan(start, goal, generator=gen(0))
    assert result.info["snapshot_iteration"] == [0, 2, 4]
    first, _, last = result.info["snapshots"]
    assert first.shape == (3, 5, 2)
    torch.testing.assert_close(last, model.rollout(start, result.actions)[:, :-1])
    assert not torch.equal(first, last), "the plan moved between the first and the last snapshot"
    assert "snapshots" not in build(name, model, horizon=6, iterations=5).plan(start, goal).info
