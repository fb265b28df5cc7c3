"""Every task end to end through its suite preset (conf/experiment/suite/) at tiny sizes: collect
with the task's default data policy -> train the world model -> evaluate GRASP and CEM on the same
protocol file (rollout goals where the preset asks for them)."""

from __future__ import annotations

import pandas as pd
import pytest

from grasp.config import CONF_DIR
from grasp.eval.metrics import RESULT_COLUMNS
from grasp.runner import run

ENVS = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("env", ENVS)
def test_collect_train_evaluate_grasp_and_cem(env, tiny_cfg, tmp_path):
    frames = []
    for planner in ("grasp", "cem"):
        cfg = tiny_cfg(f"experiment=suite/{env}", f"planner={planner}", f"paths.output_dir={tmp_path}/{planner}",
                       "planner.iterations=4", *(["planner.sync_every=2"] if planner == "grasp" else []))
        results = run(cfg, tmp_path / planner)
        assert list(results.columns) == RESULT_COLUMNS and len(results) == 2
        assert (results["steps"] >= 1).all() and results["final_distance"].notna().all()
        assert results["model_divergence"].notna().all() and (results["plan_time"] > 0).all()
        assert results["model_val_mse"].notna().all() and (results["model_val_rollout_rmse"] > 0).all()
        assert set(results["env"]) == {env}
        frames.append(results)
    both = pd.concat(frames)
    assert set(both["env"]) == {frames[0]["env"].iloc[0]}
    assert list(frames[0]["episode_seed"]) == list(frames[1]["episode_seed"])
    cache = tmp_path / "outputs" / "cache"
    assert len(list(cache.glob("protocols/*/*.json"))) == 1  # one protocol file served both planners
    assert len(list(cache.glob("checkpoints/*/*.pt"))) == 1 and len(list(cache.glob("data/*/*.npz"))) == 1
