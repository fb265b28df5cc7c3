"""scripts/peer_parity.py: the cost handed to the peer is the one our samplers score with, our
side really runs the budget it reports, and a missing peer is one clear error. The peer itself
is not a dependency, so the side-by-side run is a benchmark (docs/benchmarks/README.md)."""

from __future__ import annotations

import argparse

import pytest
import torch

from grasp.cli import bench, peer

TINY = argparse.Namespace(seed=0, depth=None, state_dim=4, action_dim=2, hidden_dim=16, residual_scale=0.1,
                          action_gain=10.0, compile=None)


def tiny_model():
    return bench.build_model("mlp", TINY, torch.device("cpu"))


def knobs(**over) -> argparse.Namespace:
    base = dict(iterations=3, samples=12, elites=4, init_std=1.0, temperature=0.5)
    return argparse.Namespace(**(base | over))


@pytest.mark.parametrize("solver", peer.SOLVERS)
def test_the_peers_cost_is_the_score_our_sampler_ranks_samples_by(solver):
    model = tiny_model()
    problem = bench.make_problem(model, 6, 3, 0, 0.1)
    draws = torch.randn(3, 12, 6, 2, generator=torch.Generator().manual_seed(1))
    ours = peer.our_planner(solver, model, knobs(), 6)
    info = {"state": problem.state0[:, None].expand(3, 12, -1), "goal": problem.goal[:, None].expand(3, 12, -1)}
    with torch.no_grad():
        theirs = peer.GoalCost(model).get_cost(info, draws)
        assert theirs.shape == (3, 12)
        torch.testing.assert_close(theirs, ours.score(problem.state0, problem.goal, draws))
        first = peer.GoalCost(model).final_cost(problem.state0, problem.goal, draws[:, 0])
    torch.testing.assert_close(first, theirs[:, 0])


@pytest.mark.parametrize("solver", peer.SOLVERS)
def test_our_side_runs_the_stated_budget_unbounded(solver):
    model = tiny_model()
    ours = peer.our_planner(solver, model, knobs(iterations=4, samples=10), 6)
    assert (ours.iterations, ours.samples, ours.min_std, ours.init_std) == (4, 10, 0.0, 1.0)
    assert bool(torch.isinf(ours.action_low).all()) and bool(torch.isinf(ours.action_high).all())
    problem = bench.make_problem(model, 6, 2, 0, 0.1)
    result = ours.plan(problem.state0, problem.goal, generator=torch.Generator().manual_seed(0))
    assert result.info["iterations"] == 4
    assert result.actions.abs().max() > 1.0, "no clamp to [-1, 1] when the peer has no bounds"


def test_a_missing_peer_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no stable_worldmodel/solver/ there"):
        peer.load_peer_solvers(tmp_path)
    with pytest.raises(SystemExit, match="--elites 40 must be <= --samples 30"):
        peer.main(["--samples", "30", "--elites", "40", "--peer-path", str(tmp_path)])
