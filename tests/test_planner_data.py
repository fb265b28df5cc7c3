"""scripts/planner_data.py: the planner's episodes are the runs it was judged on, extended to the
data's episode length; the retrained model keeps the exploration data's validation episodes; a
rerun reuses the planned episodes instead of planning again."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import torch

from conftest import REPO_ROOT
from grasp.train.dataset import TrajectoryDataset
from grasp.train.trainer import load_checkpoint

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from planner_data import merged  # noqa: E402

TINY = ["data.episodes=30", "train.steps=40", "train.eval_every=20", "world_model.hidden_dim=32",
        "train.oracle_horizons=[3]"]


def dataset(n: int, length: int, offset: float) -> TrajectoryDataset:
    states = offset + np.arange(n * (length + 1) * 2, dtype=np.float32).reshape(n, length + 1, 2)
    return TrajectoryDataset(states, np.zeros((n, length, 1), np.float32), {"episodes": n})


def test_merged_data_holds_out_the_exploration_validation_episodes_only():
    exploration, planned = dataset(20, 4, 0.0), dataset(7, 4, 1e6)
    data, fraction = merged(exploration, planned, 0.1)
    train, val = data.split(fraction)
    np.testing.assert_array_equal(val.states, exploration.split(0.1)[1].states)
    assert len(train.states) == 18 + 7 and (train.states >= 1e6).any(axis=(1, 2)).sum() == 7


def run(tmp_path, *extra):
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "planner_data.py"), "--actions", "held5", "--episodes", "4",
           "--batch", "2", "--horizon", "3", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"), *TINY,
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_a_round_plans_replays_and_retrains(tmp_path):
    first = run(tmp_path)
    assert "planned 4/4" in first
    planned = TrajectoryDataset.load(tmp_path / "out" / "planned.npz")
    length = 20  # experiment=paper_long_horizon's data.episode_len: the plan (3 steps), then the data policy
    assert planned.states.shape[:2] == (4, length + 1) and planned.actions.shape[:2] == (4, length)
    assert np.isfinite(planned.states).all() and (np.abs(planned.actions) <= 1.0).all()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary.model) == ["preset", "with planner data"]
    assert summary.transitions.iloc[0] == (30 + 4) * length
    _, payload = load_checkpoint(tmp_path / "out" / "model.pt", torch.device("cpu"), expect_env="pusht")
    assert payload["planner_data"]["pairs"] == 4 and "oracle_success@3" in " ".join(payload["metrics"])
    second = run(tmp_path)  # the planned episodes are reused; the model is trained again from them
    assert "planned 4/4" not in second
    again = pd.read_csv(tmp_path / "out" / "summary.csv")
    pd.testing.assert_frame_equal(again.drop(columns="train_s"), summary.drop(columns="train_s"))
