"""Planner-data rounds (grasp.planner_data, the runner's planner_data.rounds): a round's episodes
are the plans its planner was judged on, replayed and extended to the data's episode length; the
retrained model keeps the exploration data's validation episodes; episodes and models are cached,
so a rerun plans and trains nothing; scripts/planner_data.py measures a round."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT, compose_config, resolved
from grasp.errors import ConfigError
from grasp.planner_data import held_out_fraction, merged
from grasp.train.dataset import TrajectoryDataset
from grasp.train.trainer import load_checkpoint

TINY = ["data.episodes=30", "train.steps=40", "train.eval_every=20", "world_model.hidden_dim=32",
        "train.oracle_horizons=[3]", "planner_data.finetune_steps=0"]
ROUNDS = ["planner_data.planner=cem", "planner_data.episodes=4", "planner_data.batch_size=2", "planner_data.horizon=3"]


def dataset(n: int, length: int, offset: float) -> TrajectoryDataset:
    states = offset + np.arange(n * (length + 1) * 2, dtype=np.float32).reshape(n, length + 1, 2)
    return TrajectoryDataset(states, np.zeros((n, length, 1), np.float32), {"episodes": n})


@pytest.mark.parametrize("episodes, added", [(20, 7), (30, 4), (10000, 1000), (20000, 2000)])
def test_merged_data_holds_out_the_exploration_validation_episodes_only(episodes, added):
    exploration = dataset(episodes, 2, 0.0)
    rounds = [dataset(added // 2, 2, 1e9), dataset(added - added // 2, 2, 2e9)]
    data = merged(exploration, rounds, 0.1)
    train, val = data.split(held_out_fraction(episodes, added, 0.1))
    np.testing.assert_array_equal(val.states, exploration.split(0.1)[1].states)
    assert len(train.states) == len(exploration.split(0.1)[0].states) + added
    assert (train.states >= 1e9).any(axis=(1, 2)).sum() == added


def test_round_keys_follow_the_model_and_the_round_settings():
    base = ["experiment=paper_long_horizon", "planner_data.rounds=2", "planner_data.planner=cem",
            "planner_data.finetune_steps=0"]
    job = resolved(compose_config(base))
    assert [r.index for r in job.planner_rounds] == [1, 2] and job.model_path == job.planner_rounds[-1].checkpoint_path
    cem = job.round_planners["cem"]
    assert cem.horizon == 16 and cem.samples == 512  # CEM as tuning=pusht_long tunes it
    other_planner = resolved(compose_config([*base, "planner_data.planner=grasp"]))
    other_model = resolved(compose_config([*base, "train.steps=100"]))
    both = resolved(compose_config([*base, "planner_data.planner=[cem,grasp]"]))
    models = {r.checkpoint_path for j in (job, other_planner, other_model, both) for r in j.planner_rounds}
    assert len(models) == 8
    # a planner's first-round episodes are shared by configs that plan them on the same model
    assert both.planner_rounds[0].planned == (job.planner_rounds[0].planned[0], other_planner.planner_rounds[0].planned[0])
    assert both.planner_rounds[1].planned[0] != job.planner_rounds[1].planned[0]  # planned on another model
    assert resolved(compose_config(["experiment=paper_long_horizon", "planner_data.rounds=0"])).planner_rounds == ()
    # fine-tuning changes the round's model, not what its planner plans on the first model
    tuned = resolved(compose_config([*base, "planner_data.finetune_steps=500"]))
    assert tuned.planner_rounds[0].planned == job.planner_rounds[0].planned
    assert tuned.planner_rounds[0].checkpoint_path != job.planner_rounds[0].checkpoint_path


@pytest.mark.parametrize("override, key", [("planner_data.horizon=21", "planner_data.horizon"),
                                           ("planner_data.planner=nope", "planner_data.planner"),
                                           ("planner_data.planner=[cem,cem]", "planner_data.planner"),
                                           ("planner_data.rounds=-1", "planner_data.rounds"),
                                           ("planner_data.finetune_steps=-1", "planner_data.finetune_steps"),
                                           ("planner_data.finetune_lr=0", "planner_data.finetune_lr"),
                                           ("checkpoint=/tmp/model.pt", "planner_data.rounds")])
def test_bad_round_settings_fail_before_any_work(override, key):
    with pytest.raises(ConfigError, match=key):
        resolved(compose_config(["experiment=paper_long_horizon", "planner_data.rounds=1", override]))


def test_round_settings_that_only_rounds_need_do_not_stop_a_run_without_rounds():
    resolved(compose_config(["data.episode_len=8", "train.rollout_len=8"]))  # planner_data.horizon=16 is longer


def run(tmp_path, *extra):
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "planner_data.py"), "--actions", "held5", "--episodes", "4",
           "--batch", "2", "--horizon", "3", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"), *TINY,
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_a_round_plans_replays_and_retrains_and_a_rerun_reuses_both(tmp_path):
    first = run(tmp_path)
    planned_files = list((tmp_path / "root" / "outputs" / "cache" / "data" / "pusht").glob("planned_*.npz"))
    assert len(planned_files) == 1 and not list(planned_files[0].parent.glob("*.parts"))
    planned = TrajectoryDataset.load(planned_files[0])
    length = 20  # experiment=paper_long_horizon's data.episode_len: the plan (3 steps), then the data policy
    assert planned.states.shape[:2] == (4, length + 1) and planned.actions.shape[:2] == (4, length)
    assert np.isfinite(planned.states).all() and (np.abs(planned.actions) <= 1.0).all()
    assert planned.meta["planner_data"]["pairs"] == 4 and planned.meta["planner_data"]["planner"] == "cem"
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary.model) == ["preset", "with planner data"]
    assert summary.transitions.iloc[0] == (30 + 4) * length
    _, payload = load_checkpoint(tmp_path / "out" / "model.pt", torch.device("cpu"), expect_env="pusht")
    assert "planner_data/round1_cem_sim_success" in payload["metrics"] and "val/oracle_success@3" in payload["metrics"]
    assert "episodes planned now" in first
    second = run(tmp_path)  # everything is cached: no planning, no training, the same summary
    assert "episodes from the cache" in second
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "summary.csv"), summary)


def test_a_finetuned_round_continues_the_first_model_in_its_space(tmp_path):
    run(tmp_path, "planner_data.finetune_steps=10", "planner_data.finetune_lr=1e-12")
    payloads = [load_checkpoint(p, torch.device("cpu"), expect_env="pusht")
                for p in sorted((tmp_path / "root" / "outputs" / "cache" / "checkpoints" / "pusht").glob("*.pt"))]
    (tuned, tuned_payload), = [p for p in payloads if "planner_data/round1_cem_sim_success" in p[1]["metrics"]]
    (first, first_payload), = [p for p in payloads if p[0] is not tuned]
    assert [h["train/step"] for h in tuned_payload["history"]] == [10]  # finetune_steps, not train.steps (40)
    assert [h["train/step"] for h in first_payload["history"]][-1] == 40
    trained = first.state_dict()
    for name, value in tuned.state_dict().items():
        # normalisation kept exactly (the round's episodes are not refitted), weights moved by ~lr
        torch.testing.assert_close(value, trained[name], rtol=0, atol=1e-6 if name.startswith("net.") else 0)


def test_an_interrupted_round_keeps_its_finished_batches(tmp_path, monkeypatch):
    import grasp.planner_data as planner_data
    from grasp.job import resolve
    from grasp.train.dataset import collect
    from grasp.train.trainer import build_world_model, train_world_model
    from grasp.utils import Stopwatch

    def job_in(root):
        cfg = compose_config(["experiment=paper_long_horizon", "planner_data.rounds=1", *TINY, *ROUNDS,
                              "planner_data.episodes=6", f"paths.root_dir={root}", "progress=false"])
        return resolve(cfg, root / "job")

    reference_job, job = job_in(tmp_path / "a"), job_in(tmp_path / "b")
    try:
        task = job.task
        data = collect(task, episodes=6, episode_len=20, policy=job.data_policy, correlation=0.8, seed=0,
                       progress=False)
        torch.manual_seed(0)
        model = build_world_model(job.cfg.world_model, task.state_dim, task.action_dim)
        train_world_model(model, data, job.cfg.train, 0.2, progress=False)
        reference = planner_data.load_or_plan(reference_job, reference_job.planner_rounds[0], "cem", model, Stopwatch())

        calls, real = [], planner_data.plan_batch

        def interrupted_at_the_second_batch(*args):
            calls.append(args[3])
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(planner_data, "plan_batch", interrupted_at_the_second_batch)
        planner_round = job.planner_rounds[0]
        with pytest.raises(KeyboardInterrupt):
            planner_data.load_or_plan(job, planner_round, "cem", model, Stopwatch())
        path = dict(planner_round.planned)["cem"]
        parts = sorted(p.name for p in path.parent.glob("*.parts/*.npz"))
        assert parts == ["000000.npz"] and not path.exists()
        resumed = planner_data.load_or_plan(job, planner_round, "cem", model, Stopwatch())
        assert [list(c) for c in calls] == [[0, 1], [2, 3], [2, 3], [4, 5]], "the finished batch is not planned again"
        np.testing.assert_array_equal(resumed.states, reference.states)
        np.testing.assert_array_equal(resumed.actions, reference.actions)
        assert resumed.meta["planner_data"] == reference.meta["planner_data"]
    finally:
        job.close()
        reference_job.close()


def test_the_runner_trains_a_round_of_two_planners_before_its_sweep(tmp_path):
    from conftest import run_cli

    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "experiment=paper_long_horizon", *TINY, *ROUNDS, "planner_data.rounds=1",
                    "planner_data.planner=[cem,gd]", "eval.episodes=2", "horizon=3", "planner=cem,grasp",
                    "progress=false", "logger.wandb.mode=disabled", f"paths.root_dir={tmp_path}",
                    f"hydra.sweep.dir={sweep}"], cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cache = tmp_path / "outputs" / "cache"
    planned = [TrajectoryDataset.load(p) for p in sorted((cache / "data" / "pusht").glob("planned_*.npz"))]
    assert sorted(p.meta["planner_data"]["planner"] for p in planned) == ["cem", "gd"]
    assert len(list((cache / "checkpoints" / "pusht").glob("*.pt"))) == 2  # the first model and the round's
    timings = (sweep / "pretrain" / "0" / "timings.json").read_text()
    assert "planner_data_s" in timings, "the sweeper trained the round's model before the jobs"
    results = pd.concat([pd.read_csv(sweep / str(n) / "results.csv") for n in (0, 1)])
    assert sorted(results.planner.unique()) == ["cem", "grasp"]
