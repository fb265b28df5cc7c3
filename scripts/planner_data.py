"""Planner data for the Push-T model (issue 18): one round of the runner's planner_data stage,
measured on the levers' fixed held-out set.

The round itself is the runner's (grasp.planner_data, `planner_data.rounds=1`): plan fresh
start/goal pairs open loop with `--planner` on the preset's model, replay the plans in the
simulator and continue them with the data policy, then train a model from scratch on the
exploration episodes plus these. Both models and the planned episodes are cached by key, so a rerun
trains nothing. This script adds <out>/summary.csv: the planner's simulator and model success on
its pairs, and the oracle success of both models on the fixed held-out set of
scripts/model_levers.py; <out>/model.pt is a copy of the new model, for Table 1's command with
`checkpoint=<out>/model.pt` (docs/world_models.md). `experiment=paper_long_horizon
planner_data.rounds=1` evaluates the same model without it.

  OMP_NUM_THREADS=1 python scripts/planner_data.py --actions held5 --out outputs/planner_data/held5
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_levers import HELD_OUT, held_out, oracle_columns  # noqa: E402  (the levers' fixed held-out set)

from grasp import stages  # noqa: E402
from grasp.config import compose  # noqa: E402
from grasp.job import resolve  # noqa: E402
from grasp.loggers import WandbRun  # noqa: E402
from grasp.train.trainer import load_checkpoint  # noqa: E402
from grasp.utils import Stopwatch, seed_everything  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", choices=["held5", "stacked5"], default="held5")
    parser.add_argument("--planner", default="cem")
    parser.add_argument("--episodes", type=int, default=1000, help="planned pairs (new episodes)")
    parser.add_argument("--batch", type=int, default=100, help="pairs planned together")
    parser.add_argument("--horizon", type=int, default=16, help="plan length, model steps (16 = 80 env steps)")
    parser.add_argument("--root", type=Path, default=Path("outputs"), help="paths.root_dir (the caches)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="more config overrides (tiny sizes in tests)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    root, out = args.root.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = compose(["experiment=paper_long_horizon", f"actions={args.actions}", "planner_data.rounds=1",
                   f"planner_data.planner={args.planner}", f"planner_data.episodes={args.episodes}",
                   f"planner_data.batch_size={args.batch}", f"planner_data.horizon={args.horizon}",
                   f"paths.root_dir={root}", "progress=false", "logger.wandb.mode=disabled", "stages=[collect,train]",
                   *args.overrides])
    seed_everything(int(cfg.seed))
    job = resolve(cfg, out / "job")
    try:
        task, watch = job.task, Stopwatch()
        wandb_run = WandbRun(cfg.logger.wandb, job.output_dir, name="planner_data", config={}, tags=[])
        started = time.perf_counter()
        model, metrics = stages.world_model(job, wandb_run, watch)
        elapsed = time.perf_counter() - started
        preset, _ = load_checkpoint(job.checkpoint_path, job.device, expect_env=task.name)
        held = held_out(task, job.data_policy, float(cfg.data.correlation), root / "levers" / f"held_out_{args.actions}.npz")
        stats = {"planner": args.planner, "pairs": args.episodes, "plan_horizon": args.horizon,
                 "sim_success_%": round(100 * metrics[f"planner_data/round1_{args.planner}_sim_success"], 1),
                 "model_success_%": round(100 * metrics[f"planner_data/round1_{args.planner}_model_success"], 1)}
        fresh = "planned now" if "planner_data" in watch.seconds else "from the cache"
        print(f"planner_data: {stats}; episodes {fresh}; this run: {elapsed:.0f} s "
              f"({watch.seconds.get('planner_data', 0.0):.0f} s planning)", flush=True)
        rows = [{"model": "preset", **oracle_columns(preset, held, task)},
                {"model": "with planner data", **oracle_columns(model, held, task)}]
        summary = pd.DataFrame([{**stats, **row, "held_out_episodes": HELD_OUT["episodes"],
                                 "transitions": (int(cfg.data.episodes) + args.episodes) * int(cfg.data.episode_len)}
                                for row in rows])
        summary.to_csv(out / "summary.csv", index=False)
        shutil.copyfile(job.model_path, out / "model.pt")
        print(summary.to_string(index=False))
    finally:
        job.close()


if __name__ == "__main__":
    main()
