"""NaN/Inf from a world model is survived and reported: planners return their best finite plan
and flag the problem, MPC and the runner carry the flag into results.csv, and training stops with
a clear error (keeping its last good state) or skips the batch, never saving NaN weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_config, planner_config
from grasp.config import config_options
from grasp.planners import build
from grasp import runner
from grasp.models.analytic import LinearWorldModel
from grasp.models.mlp import MLPWorldModel
from grasp.planners.noise import NoiseStreams
from grasp.train.trainer import NonFiniteTraining, build_world_model, read_resume_state, train_world_model
from test_batching import BATCH_ATOL
from test_resume import setting  # noqa: F401  (the tiny wall dataset and training config: 60 steps, saved every 20)


class PoisonedIntegrator(LinearWorldModel):
    """A 2-D single integrator whose steps from states beyond x = 5 are NaN (and Inf in y): a
    model sent off its training data, where learned models do produce such values."""

    def step(self, state, action):
        nxt = super().step(state, action)
        poisoned = (state[..., :1] > 5).expand_as(nxt)
        bad = torch.tensor([float("nan"), float("inf")], device=nxt.device).expand_as(nxt)
        return torch.where(poisoned, bad, nxt)


def integrator(cls=LinearWorldModel):
    return cls(torch.eye(2), 0.1 * torch.eye(2))


#: problem 1 starts in the poisoned region; problems 0 and 2 never go near it
STARTS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-0.5, 0.5]])
GOALS = torch.tensor([[0.4, 0.3], [10.2, 0.1], [-0.2, 0.1]])
PLANNERS = config_options("planner")


@pytest.mark.parametrize("name", PLANNERS)
def test_a_poisoned_problem_is_flagged_and_gets_a_finite_plan_while_the_others_plan_as_if_alone(name):
    overrides = {"sync_every": 10} if "sync_every" in planner_config(name) else {}
    poisoned = build(name, integrator(PoisonedIntegrator), horizon=8, iterations=20, **overrides)
    clean = build(name, integrator(), horizon=8, iterations=20, **overrides)
    keys = [3, 4, 5]
    result = poisoned.plan(STARTS, GOALS, generator=NoiseStreams.from_seeds(keys))
    assert torch.isfinite(result.actions).all(), "MPC must never execute a NaN action"
    if result.states is not None:  # lifted planners' virtual states: the next MPC call's warm start
        assert torch.isfinite(result.states).all()
    assert result.info["nonfinite"].tolist() == [False, True, False]
    # the poisoned problem falls back to its initial guess (zeros: no warm start)
    assert torch.equal(result.actions[1], torch.zeros(8, 2))
    healthy = clean.plan(STARTS[[0, 2]], GOALS[[0, 2]], generator=NoiseStreams.from_seeds([3, 5]))
    torch.testing.assert_close(result.actions[[0, 2]], healthy.actions, atol=BATCH_ATOL, rtol=0)
    assert torch.isfinite(result.info["final_cost"][[0, 2]]).all()


class CliffIntegrator(LinearWorldModel):
    """Finite everywhere except for actions above 0.2 in x: an optimiser heading for the far goal
    runs into the cliff part way through its iterations."""

    def step(self, state, action):
        nxt = super().step(state, action)
        return torch.where((action[..., :1] > 0.2).expand_as(nxt), torch.full_like(nxt, float("nan")), nxt)


@pytest.mark.parametrize("name", ["grasp", "gd", "cem"])
def test_nan_met_during_the_optimisation_keeps_the_best_finite_plan(name):
    overrides = {"sync": "none"} if name == "grasp" else {}
    planner = build(name, integrator(CliffIntegrator), horizon=5, iterations=40, **overrides)
    start, goal = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])  # needs actions of 2 in x: past the cliff
    result = planner.plan(start, goal, generator=torch.Generator().manual_seed(0))
    assert result.info["nonfinite"].tolist() == [True]
    assert torch.isfinite(result.actions).all() and (result.actions[..., 0] <= 0.2).all()
    cost = float(result.info["final_cost"][0])
    assert cost < float((goal ** 2).sum()), "the plan kept moves towards the goal made before the cliff"


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("nan_run")
    cfg = compose_config(TINY + [f"paths.root_dir={root}", f"paths.output_dir={root}/train", "stages=[collect,train]"])
    runner.run(cfg, root / "train")
    return root, next((root / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt"))


def test_a_run_whose_model_emits_nan_finishes_and_reports_it(trained_checkpoint, monkeypatch, caplog):
    root, checkpoint = trained_checkpoint
    original = MLPWorldModel.step

    def nan_for_strong_pushes(self, state, action):  # NaN wherever the first action component is large
        nxt = original(self, state, action)
        return torch.where((action[..., :1] > 0.5).expand_as(nxt), torch.full_like(nxt, float("nan")), nxt)

    monkeypatch.setattr(MLPWorldModel, "step", nan_for_strong_pushes)
    cfg = compose_config(TINY + [f"paths.root_dir={root}", f"paths.output_dir={root}/eval", f"checkpoint={checkpoint}",
                                 "planner=cem", "eval.episodes=3"])
    results = runner.run(cfg, Path(cfg.paths.output_dir))
    on_disk = pd.read_csv(root / "eval" / "results.csv")
    assert len(on_disk) == 3 and (on_disk["nonfinite_plans"] >= 1).all(), "every episode's plans met the NaN"
    assert (on_disk["nonfinite_plans"] <= on_disk["plan_calls"]).all()
    assert on_disk["final_distance"].notna().all() and (on_disk["steps"] >= 1).all()
    assert list(results["nonfinite_plans"]) == list(on_disk["nonfinite_plans"])
    assert "hit NaN/Inf" in caplog.text


# ---- training -------------------------------------------------------------------------------------
def nan_loss_at(model, steps: set[int]):
    """Make the model's training loss NaN at the given (1-based) training steps."""
    original, calls = model.training_loss, {"n": 0}

    def loss(obs, actions):
        calls["n"] += 1
        value, parts = original(obs, actions)
        return (value * float("nan"), parts) if calls["n"] in steps else (value, parts)

    model.training_loss = loss


def test_training_stops_on_nan_and_keeps_its_last_good_state(setting, tmp_path):
    cfg, data, train_cfg = setting
    model = build_world_model(cfg.world_model, 4, 2)
    nan_loss_at(model, {25})
    state_file = tmp_path / "wm.resume.pt"
    with pytest.raises(NonFiniteTraining, match=r"at step 30; the training state of step 20 is kept"):
        train_world_model(model, data, train_cfg, 0.1, progress=False, resume_path=state_file)
    saved = read_resume_state(state_file)
    assert saved["step"] == 20
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_training_with_nonfinite_skip_drops_the_bad_batches(setting):
    cfg, data, train_cfg = setting
    model = build_world_model(cfg.world_model, 4, 2)
    nan_loss_at(model, {25, 26})
    result = train_world_model(model, data, OmegaConf.merge(train_cfg, {"nonfinite": "skip"}), 0.1, progress=False)
    assert result["final"]["train/skipped_batches"] == 2 and result["history"][-1]["train/step"] == 60
    assert all(torch.isfinite(p).all() for p in model.parameters())
