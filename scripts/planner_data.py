"""Planner data for the Push-T model (issue 18): one DAgger-style round against model exploitation.

Planners reach the goal in the model far more often than in the simulator: they steer into the
places where the model is wrong, which the data policy never visits. This script adds those
places to the data. It
1. loads (or trains) the preset's model, `experiment=paper_long_horizon` with `--actions`;
2. draws `--episodes` start/goal pairs with a seed no evaluation uses (rollout goals `--horizon`
   model steps away) and plans each open loop with `--planner` (its tuned Push-T config);
3. replays every plan in the simulator, then continues with the data policy up to the data's
   episode length, and keeps the states as new episodes;
4. trains a model from scratch by the preset's recipe on the exploration episodes plus these
   (the validation episodes stay the exploration data's own), saved to <out>/model.pt;
5. writes <out>/summary.csv: the planner's simulator and model success on the new pairs, and the
   oracle success of both models on the fixed held-out set of scripts/model_levers.py.

Evaluate the new model on Table 1's pairs with `checkpoint=<out>/model.pt` (docs/world_models.md).

  OMP_NUM_THREADS=1 python scripts/planner_data.py --actions held5 --out outputs/planner_data/held5
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_levers import HELD_OUT, held_out, oracle_columns  # noqa: E402  (the levers' fixed held-out set)

from grasp import stages  # noqa: E402
from grasp.config import compose  # noqa: E402
from grasp.envs.exploration import policy_steps  # noqa: E402
from grasp.eval.oracle import oracle_success  # noqa: E402
from grasp.eval.protocol import make_protocol  # noqa: E402
from grasp.eval.runner import evaluate_batch  # noqa: E402
from grasp.job import build_planner, resolve  # noqa: E402
from grasp.loggers import WandbRun  # noqa: E402
from grasp.train.dataset import TrajectoryDataset  # noqa: E402
from grasp.train.trainer import build_world_model, save_checkpoint, train_world_model  # noqa: E402
from grasp.utils import Stopwatch, derive_seed, seed_everything  # noqa: E402

#: the pairs' seed: not Table 1's (eval.seed), not the exploration data's, not the held-out set's
PAIRS_SEED = 515151


def replayed(task, start: np.ndarray, actions: list[np.ndarray], length: int, policy: str, correlation: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """states (length+1, D) and actions (length, A) of one episode: the plan replayed from `start`
    in the simulator, then the data policy up to `length` model steps."""
    states, taken = [task.reset(start)], []
    for action in actions:
        taken.append(np.asarray(action, dtype=np.float32))
        states.append(task.step(taken[-1].astype(np.float64)))
    rest = length - len(taken)
    if rest > 0:
        for action, state in policy_steps(task, np.random.default_rng(seed), rest, policy, correlation, np.float32):
            taken.append(np.asarray(action, dtype=np.float32))
            states.append(state)
    return np.stack(states), np.stack(taken)


def plan_episodes(job, model, episodes: int, batch: int, horizon: int) -> tuple[TrajectoryDataset, dict]:
    """The planner's episodes on fresh pairs and its success on them (simulator and model)."""
    cfg, task = job.cfg, job.task
    correlation, length = float(cfg.data.correlation), int(cfg.data.episode_len)
    protocol = make_protocol(task, episodes, PAIRS_SEED, horizon, "rollout", job.data_policy, correlation)
    planner, watch = build_planner(job, model), Stopwatch()
    outcomes = []
    for first in range(0, episodes, batch):
        outcomes += evaluate_batch(job, planner, protocol, range(first, min(first + batch, episodes)), watch)
        print(f"planner_data: planned {len(outcomes)}/{episodes} ({watch.seconds.get('plan', 0.0):.0f} s)", flush=True)
    pieces = [replayed(task, protocol.starts[i], o.actions, length, job.data_policy, correlation,
                       derive_seed(PAIRS_SEED, 2, i)) for i, o in enumerate(outcomes)]
    for i, (o, (states, _)) in enumerate(zip(outcomes, pieces)):  # the replay is the run the planner was judged on
        if bool(task.success(states[o.steps][None], protocol.goals[i][None])[0]) != o.success:
            raise RuntimeError(f"planner_data: pair {i}: the replayed plan does not end as the evaluated one did")
    data = TrajectoryDataset(np.stack([p[0] for p in pieces]).astype(np.float32), np.stack([p[1] for p in pieces]),
                             {"source": f"planner_data {job.planner}", "episodes": episodes})
    stats = {"planner": job.planner, "pairs": episodes, "plan_horizon": horizon,
             "sim_success_%": round(100 * float(np.mean([o.success for o in outcomes])), 1),
             "model_success_%": round(100 * float(np.nanmean([o.model_success for o in outcomes])), 1),
             "plan_s": round(watch.seconds.get("plan", 0.0), 1)}
    return data, stats


def merged(exploration: TrajectoryDataset, planned: TrajectoryDataset,
           val_fraction: float) -> tuple[TrajectoryDataset, float]:
    """The exploration training episodes, then the planner's, then the exploration validation
    episodes last (TrajectoryDataset.split holds out the last episodes), and the validation
    fraction that holds out the same episodes: validation is unchanged."""
    train, val = exploration.split(val_fraction)
    states = np.concatenate([train.states, planned.states.astype(train.states.dtype), val.states])
    actions = np.concatenate([train.actions, planned.actions.astype(train.actions.dtype), val.actions])
    n_val = len(val.states)
    fraction = n_val / len(states)  # the same episodes held out: round(N * fraction) == n_val
    return TrajectoryDataset(states, actions, {**exploration.meta, "planner_episodes": len(planned.states)}), fraction


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
    cfg = compose(["experiment=paper_long_horizon", f"actions={args.actions}", f"planner={args.planner}",
                   f"horizon={args.horizon}", f"paths.root_dir={root}",
                   "progress=false", "logger.wandb.mode=disabled", "stages=[collect,train]", *args.overrides])
    if args.horizon > int(cfg.data.episode_len):
        parser.error(f"--horizon {args.horizon}: allowed at most data.episode_len ({cfg.data.episode_len})")
    seed_everything(int(cfg.seed))
    job = resolve(cfg, out / "job")
    try:
        task = job.task
        wandb_run = WandbRun(cfg.logger.wandb, job.output_dir, name="planner_data", config={}, tags=[])
        model, _ = stages.world_model(job, wandb_run, Stopwatch())
        exploration = stages.dataset(job)
        held = held_out(task, job.data_policy, float(cfg.data.correlation), root / "levers" / f"held_out_{args.actions}.npz")
        rows = [{"model": "preset", **oracle_columns(model, held, task)}]
        planned_path = out / "planned.npz"
        if planned_path.exists():  # a rerun reuses the planned episodes
            stats = {k: v.item() if hasattr(v, "item") else v for k, v in pd.read_csv(out / "planned.csv").iloc[0].items()}
            planned = TrajectoryDataset.load(planned_path)
        else:
            planned, stats = plan_episodes(job, model, args.episodes, args.batch, args.horizon)
            planned.save(planned_path)
            pd.DataFrame([stats]).to_csv(out / "planned.csv", index=False)
        print(f"planner_data: {stats}", flush=True)
        data, val_fraction = merged(exploration, planned, float(cfg.data.val_fraction))
        seed_everything(int(cfg.seed))  # the same initial weights whether the episodes were planned now or reused
        retrained = build_world_model(cfg.world_model, task.state_dim, task.action_dim).to(job.device)
        started = time.perf_counter()
        result = train_world_model(retrained, data, cfg.train, val_fraction, progress=False)
        train_s = time.perf_counter() - started
        _, val = data.split(val_fraction)
        # the final validation's metrics (training's last held_out_metrics) and the oracle, as the runner stores them
        metrics = {**(result["final"] or {}),
                   **oracle_success(retrained, val, task.success, [int(h) for h in cfg.train.oracle_horizons])}
        save_checkpoint(out / "model.pt", retrained, cfg.world_model,
                        {"env": task.name, "metrics": metrics, "history": result["history"],
                         "planner_data": stats})
        rows.append({"model": "with planner data", **oracle_columns(retrained, held, task), "train_s": round(train_s, 1)})
        summary = pd.DataFrame([{**stats, **row, "held_out_episodes": HELD_OUT["episodes"],
                                 "transitions": data.num_transitions} for row in rows])
        summary.to_csv(out / "summary.csv", index=False)
        print(summary.to_string(index=False))
    finally:
        job.close()


if __name__ == "__main__":
    main()
