"""docs/extending.md is followed literally: every file block of the page (a toy planner, a toy
task and a toy world model, each one module and one YAML) is written into a temporary folder and
run through the real runner from there, as a user of the guide would."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

GUIDE = REPO_ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"^```(?:python|yaml) file=(\S+)\n(.*?)^```$", re.M | re.S)
SIZES = ["data.episodes=20", "data.episode_len=20", "train.steps=60", "train.eval_every=30", "train.batch_size=64",
         "train.rollout_len=5", "eval.episodes=3", "eval.max_steps=8", "horizon=8", "progress=false",
         "logger.wandb.mode=disabled"]


def guide_files() -> dict[str, str]:
    return {name: text for name, text in BLOCK.findall(GUIDE.read_text())}


def test_the_guide_has_one_module_and_one_yaml_per_recipe():
    assert set(guide_files()) == {"toy_planner.py", "conf/planner/toy_random.yaml", "toy_task.py",
                                  "conf/env/drift_point.yaml", "toy_model.py", "conf/world_model/toy_linear.yaml"}


def test_the_three_recipes_run_through_the_runner(tmp_path):
    folder = tmp_path / "mine"
    for name, text in guide_files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(folder), "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "grasp.run", f"hydra.searchpath=[file://{folder}/conf]",
            "env=drift_point", "world_model=toy_linear", "planner=toy_random", f"paths.root_dir={tmp_path}",
            f"hydra.run.dir={tmp_path}/run", *SIZES]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(results) == 3 and set(results["planner"]) == {"toy_random"} and set(results["env"]) == {"drift_point"}
    assert results["model_final_cost"].notna().all() and results["model_val_mse"].notna().all()
    (checkpoint,) = (tmp_path / "outputs" / "cache" / "checkpoints" / "drift_point").glob("*.pt")
    payload = torch.load(checkpoint, weights_only=False)
    assert payload["model_config"]["_target_"] == "toy_model.LinearResidualModel"
    # the toy planner's YAML is its schema: a key it does not take is refused before any work
    bad = subprocess.run(args + ["+planner.iterations=5"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert bad.returncode != 0 and "planner.iterations" in bad.stderr and "unknown" in bad.stderr
