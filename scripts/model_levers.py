"""What each world-model lever does to a model's accuracy where planners need it.

Every lever is a set of config overrides on one base (Push-T, `experiment=paper_long_horizon`
with the plain `world_model=mlp`, held or stacked actions). Each is trained through the runner's own stages (cached by config,
so a rerun trains nothing twice) and measured on one fixed set of held-out trajectories of the
data policy, collected once per action setting with its own seed: the oracle success at each
horizon (grasp.eval.oracle), so levers that change the training data are judged on the same
trajectories as the rest. One CSV row per lever, appended as each finishes (a rerun skips the
levers already in the file).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/model_levers.py --actions stacked5 \\
        --out docs/world_models/pusht_stacked.csv --levers baseline,rollout8
    OMP_NUM_THREADS=1 .venv/bin/python scripts/model_levers.py --actions stacked5 \
        --out docs/world_models/pusht_stacked_simulator.csv --sensitivity 0,1e-5,1e-4,1e-3,1e-2
    .venv/bin/python scripts/model_levers.py --list
    .venv/bin/python scripts/model_levers.py --actions stacked5 --misses outputs/cache/checkpoints/pusht/<key>.pt
    .venv/bin/python scripts/model_levers.py --actions held5 --motion
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from grasp import stages
from grasp.config import compose
from grasp.envs.pusht_geometry import PX
from grasp.eval.oracle import oracle_key, oracle_predictions, oracle_success
from grasp.job import resolve
from grasp.loggers import WandbRun
from grasp.train.dataset import TrajectoryDataset, collect
from grasp.train.trainer import build_world_model, load_checkpoint, train_world_model
from grasp.utils import Stopwatch, seed_everything

#: the plain MLP (world_model=mlp) on the Table 1 preset's data and training; levers change it
#: (8000 steps at lr 1e-3, as every lever was measured; the preset itself trains 20000 at 2e-3:
#: lever data10x_rollout8_frame_20k_lr2e-3)
#: (256 units per hidden layer, as every lever was measured, whatever width the preset picks)
BASE = ["experiment=paper_long_horizon", "world_model=mlp", "world_model.hidden_dim=256", "train.steps=8000",
        "train.lr=1e-3", "stages=[collect,train]", "planner_data.rounds=0", "logger.wandb.mode=disabled",
        # the data the levers measured since the preset took 20000 episodes (e0cd4d4), on one stream
        "data.episodes=20000", "data.shards=1"]
#: held-out trajectories: how many, how long (model steps) and their seed (not any training set's)
HELD_OUT = {"episodes": 200, "episode_len": 16, "seed": 424242}
HORIZONS = (8, 12, 16)
FRAME = "world_model.frame={_target_:grasp.envs.pusht_frame.BlockFrame}"
SELECT = ["train.select=best", "train.rollout_len=16"]
#: Push-T's block angle (cos, sin: state entries 4 and 5) weighted x4 in the training loss
ANGLE4 = "[1,1,1,1,4,4,1,1,1,1,1]"
#: world_model=mlp_pusht's structure on 10x the data: the base of the preset's levers
PUSHT_MODEL = ["data.episodes=10000", "world_model.pred_steps=8", FRAME]
#: the 20000-episode levers' base: 20000 episodes, 20000 steps at lr 2e-3 (the preset's data and training)
PRESET_DATA20X = [*PUSHT_MODEL, "data.episodes=20000", "train.steps=20000", "train.lr=2e-3"]
LEVERS: dict[str, list[str]] = {
    "baseline": [],
    "preset": ["world_model=mlp_pusht"],  # the Push-T presets' model, at the base's 8000 steps
    "select_best": SELECT,
    "rollout4": ["world_model.pred_steps=4"],
    "rollout8": ["world_model.pred_steps=8"],
    "rollout16": ["world_model.pred_steps=16"],
    "rollout8_discount0.8": ["world_model.pred_steps=8", "world_model.rollout_discount=0.8"],
    "rollout8_select_best": ["world_model.pred_steps=8", *SELECT],
    "layernorm": ["world_model.norm=layer"],
    "wide512x4": ["world_model.hidden_dim=512", "world_model.depth=4"],
    "steps30k": ["train.steps=30000"],
    "data10x": ["data.episodes=10000"],
    "block_frame": [FRAME],
    "ensemble5": ["world_model=ensemble"],
    "substeps5": ["world_model.substeps=5"],
    "rollout8_frame": ["world_model.pred_steps=8", FRAME],
    "data10x_rollout8_frame": PUSHT_MODEL,
    "data10x_rollout8_frame_30k": [*PUSHT_MODEL, "train.steps=30000"],
    "data10x_rollout16_frame": ["data.episodes=10000", "world_model.pred_steps=16", FRAME],
    "data10x_rollout8_frame_20k": [*PUSHT_MODEL, "train.steps=20000"],
    "data10x_rollout8_frame_20k_lr2e-3": [*PUSHT_MODEL, "train.steps=20000", "train.lr=2e-3"],
    "data10x_rollout8_frame_20k_lr3e-3": [*PUSHT_MODEL, "train.steps=20000", "train.lr=3e-3"],
    "data10x_rollout8_frame_30k_lr2e-3": [*PUSHT_MODEL, "train.steps=30000", "train.lr=2e-3"],
    "data20x_rollout8_frame_20k_lr2e-3": PRESET_DATA20X,
    "data20x_rollout8_frame_20k_lr2e-3_batch512": [*PRESET_DATA20X, "train.batch_size=512"],
    "data20x_rollout8_frame_20k_lr2e-3_ema0.999": [*PRESET_DATA20X, "train.ema=0.999"],
    "data20x_rollout8_frame_20k_lr2e-3_wide384": [*PRESET_DATA20X, "world_model.hidden_dim=384"],
    "data20x_rollout8_frame_20k_lr2e-3_wide512": [*PRESET_DATA20X, "world_model.hidden_dim=512"],
    "data20x_rollout8_frame_20k_lr2e-3_angle4": [*PRESET_DATA20X, f"world_model.state_loss_weights={ANGLE4}"],
    "data20x_rollout8_frame_20k_lr2e-3_wide512_bf16": [*PRESET_DATA20X, "world_model.hidden_dim=512", "train.precision=bf16"],
    "data20x_rollout8_frame_20k_lr2e-3_wide640_bf16": [*PRESET_DATA20X, "world_model.hidden_dim=640", "train.precision=bf16"],
    "data20x_rollout8_frame_30k_lr2e-3_wide384_bf16": [*PRESET_DATA20X, "train.steps=30000", "world_model.hidden_dim=384",
                                                       "train.precision=bf16"],
    "data20x_rollout8_frame_20k_lr2e-3_wide384_bf16_ensemble2": [*PRESET_DATA20X, "world_model=ensemble",
                                                                 "world_model.members=2", "world_model.hidden_dim=384",
                                                                 "train.precision=bf16"],
    "data20x_rollout8_frame_20k_lr2e-3_bf16_ensemble2": [*PRESET_DATA20X, "world_model=ensemble", "world_model.members=2",
                                                         "train.precision=bf16"],
    # twice the preset's data (40000 episodes, 800000 transitions) at 384 units
    "data40x_rollout8_frame_20k_lr2e-3_wide384": [*PRESET_DATA20X, "data.episodes=40000", "world_model.hidden_dim=384"],
    # the 384-unit lever again from other initial weights and batch orders: one training's spread
    **{f"data20x_rollout8_frame_20k_lr2e-3_wide384_seed{seed}": [*PRESET_DATA20X, "world_model.hidden_dim=384",
                                                                 f"train.seed={seed}"] for seed in (1, 2)},
}
#: levers that continue another lever's trained model (its weights and normalisation, on its data)
#: with changed training settings: name -> (the lever continued, the overrides of the continuation)
CONTINUED: dict[str, tuple[str, list[str]]] = {
    # does the held model lose accuracy at 16 model steps because it trains on 8-step windows?
    # 5000 more steps at the preset's fine-tuning rate on 16-step windows, against 8-step ones
    **{f"wide384_seed1_then_rollout{steps}_5k": ("data20x_rollout8_frame_20k_lr2e-3_wide384_seed1",
                                                 [f"world_model.pred_steps={steps}", "train.steps=5000",
                                                  "train.lr=5e-4"]) for steps in (8, 16)},
}


def held_out(task, policy: str, correlation: float, path: Path) -> TrajectoryDataset:
    """The fixed held-out trajectories of this action setting, collected once."""
    if path.exists():
        return TrajectoryDataset.load(path)
    data = collect(task, HELD_OUT["episodes"], HELD_OUT["episode_len"], policy, correlation, HELD_OUT["seed"],
                   progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.save(path)
    return data


@contextlib.contextmanager
def fixed_set(actions: str, root: Path):
    """The base config's task and the fixed held-out trajectories of this action setting."""
    cfg = compose([*BASE, f"actions={actions}", f"paths.root_dir={root}", "progress=false"])
    job = resolve(cfg)
    try:
        yield job.task, held_out(job.task, job.data_policy, float(cfg.data.correlation),
                                 root / "levers" / f"held_out_{actions}.npz")
    finally:
        job.close()


def oracle_columns(model, data: TrajectoryDataset, task) -> dict[str, float]:
    """The model's oracle success % on `data` at HORIZONS, named by env steps (oracle@40, ...)."""
    oracle = oracle_success(model, data, task.success, HORIZONS)
    steps = task.env_steps_per_model_step
    return {f"oracle@{h * steps:g}": round(100 * oracle[oracle_key(h)], 1) for h in HORIZONS}


def measure(name: str, overrides: list[str], actions: str, root: Path,
            continued: list[str] | None = None) -> dict:
    """One lever's row; with `continued`, of its model trained further with those overrides."""
    cfg = compose([*BASE, f"actions={actions}", f"paths.root_dir={root}", "progress=false", *overrides])
    seed_everything(int(cfg.seed))
    job = resolve(cfg, root / "levers" / actions / name)
    try:
        watch, started = Stopwatch(), time.perf_counter()
        wandb_run = WandbRun(cfg.logger.wandb, job.output_dir, name=name, config={}, tags=[])
        model, metrics = stages.world_model(job, wandb_run, watch)
        elapsed = time.perf_counter() - started - watch.seconds.get("collect", 0.0)
        if continued is not None:  # the row's time is the continuation's
            overrides = [*overrides, *continued]
            cfg = compose([*BASE, f"actions={actions}", f"paths.root_dir={root}", *overrides])
            started = time.perf_counter()
            model, metrics = continue_training(model, cfg, TrajectoryDataset.load(job.data_path))
            elapsed = time.perf_counter() - started
        data = held_out(job.task, job.data_policy, float(cfg.data.correlation),
                        root / "levers" / f"held_out_{actions}.npz")
        return {"lever": name, "overrides": " ".join(overrides), "model_key": job.model_key,
                **oracle_columns(model, data, job.task),
                "val_one_step_mse": metrics.get("val/one_step_mse"),
                "selected_step": metrics.get("train/selected_step", cfg.train.steps),
                "train_s": round(elapsed, 1), "transitions": int(cfg.data.episodes) * int(cfg.data.episode_len)}
    finally:
        job.close()


def continue_training(trained, cfg, data: TrajectoryDataset):
    """A model built by `cfg.world_model` from `trained`'s weights and statistics, trained by
    `cfg.train` on `data` (not cached: a lever's row is its record)."""
    model = build_world_model(cfg.world_model, trained.state_dim, trained.action_dim)
    model.load_state_dict(trained.state_dict())
    result = train_world_model(model, data, cfg.train, float(cfg.data.val_fraction), progress=False,
                               fit_statistics=False)
    return model, dict(result["final"] or {})


def misses(checkpoint: Path, actions: str, root: Path) -> list[dict]:
    """Which error fails a model's oracle on the fixed set: the share of moved trajectories that
    pass, fail on the block's angle alone, on its position alone or on both, and the median errors
    (px, degrees) at each horizon."""
    with fixed_set(actions, root) as (task, data):
        model = load_checkpoint(checkpoint, torch.device("cpu"), expect_env=task.name)[0]
        return [{"env_steps": horizon * task.env_steps_per_model_step, **miss_split(task, *pair)}
                for horizon, pair in oracle_predictions(model, data, task.success, HORIZONS).items()
                if pair is not None]


def miss_split(task, predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Block-pose states (N, D) against the true ones: % passing the success rule, failing on the
    angle alone, on the position alone and on both; median errors in px and degrees."""
    pos, angle = task.pose_errors(predicted, truth)
    pos_ok, angle_ok = pos < task.success_pos, angle < task.success_angle
    return {"trajectories": len(pos),
            **{name: round(100 * float(np.mean(hit)), 1) for name, hit in (
                ("pass_%", pos_ok & angle_ok), ("angle_only_%", pos_ok & ~angle_ok),
                ("position_only_%", ~pos_ok & angle_ok), ("both_%", ~pos_ok & ~angle_ok))},
            "median_position_px": round(float(np.median(pos)) * PX, 1),
            "median_angle_deg": round(float(np.degrees(np.median(angle))), 1)}


def motion(actions: str, root: Path) -> list[dict]:
    """How far the block moves in the fixed held-out trajectories the oracle keeps (those whose
    start does not already meet their end), per horizon: how much a model must get right."""
    with fixed_set(actions, root) as (task, data):
        return [block_motion(task, data.states.astype(np.float64), horizon) for horizon in HORIZONS]


def block_motion(task, states: np.ndarray, horizon: int) -> dict[str, float]:
    """(N, L+1, D) Push-T states: of the trajectories that move by `horizon`, the median net shift
    and turn of the block between their start and that step, and its path and total turning."""
    moved = ~np.asarray(task.success(states[:, 0], states[:, horizon]), dtype=bool)
    kept = states[moved]
    shift, turn = task.pose_errors(kept[:, 0], kept[:, horizon])
    path, turning = task.pose_errors(kept[:, :horizon], kept[:, 1:horizon + 1])
    return {"env_steps": horizon * task.env_steps_per_model_step, "moved": int(moved.sum()),
            "trajectories": len(states), "median_shift_px": round(float(np.median(shift)) * PX, 1),
            "median_turn_deg": round(float(np.degrees(np.median(turn))), 1),
            "median_path_px": round(float(np.median(path.sum(axis=1))) * PX, 1),
            "median_turning_deg": round(float(np.degrees(np.median(turning.sum(axis=1)))), 1)}


def sensitivity(actions: str, root: Path, noises: list[float]) -> list[dict]:
    """The simulator as a model: the held-out actions replayed from starts whose pusher and block
    positions are moved by N(0, noise^2) units. Its oracle success is the ceiling of any model
    whose error is as large as that noise at the start: how chaotic the trajectories are."""
    with fixed_set(actions, root) as (task, data):
        rng = np.random.default_rng(0)
        states = data.states.astype(np.float64)
        moved = {h: ~np.asarray(task.success(states[:, 0], states[:, h]), dtype=bool) for h in HORIZONS}
        rows = []
        for noise in noises:
            reached = np.empty_like(states)
            for episode, start in enumerate(states[:, 0]):
                start = start.copy()
                start[:4] += rng.normal(0.0, noise, 4)
                reached[episode, 0] = task.reset(start)
                for t, action in enumerate(data.actions[episode].astype(np.float64)):
                    reached[episode, t + 1] = task.step(action)
            steps = task.env_steps_per_model_step
            hits = {h: np.asarray(task.success(reached[:, h], states[:, h]), dtype=bool)[moved[h]] for h in HORIZONS}
            rows.append({"lever": f"simulator, start moved by {noise:g}", "overrides": "",
                         **{f"oracle@{h * steps:g}": round(100 * hits[h].mean(), 1) for h in HORIZONS}})
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", choices=["held5", "stacked5"], default="stacked5")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated names (--list shows them)")
    parser.add_argument("--out", type=Path, help="the CSV to append rows to")
    parser.add_argument("--root", type=Path, default=Path("outputs"), help="paths.root_dir of the runs (caches)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--misses", type=Path, default=None, metavar="CHECKPOINT",
                        help="print which error (angle, position) fails this Push-T model's oracle instead")
    parser.add_argument("--motion", action="store_true",
                        help="print how far the block moves in the fixed held-out trajectories instead")
    parser.add_argument("--sensitivity", default=None,
                        help="comma-separated noises (units): measure the simulator's own ceiling instead of levers")
    args = parser.parse_args()
    if args.list:
        for name, overrides in LEVERS.items():
            print(f"{name:28s} {' '.join(overrides) or '(the plain MLP)'}")
        for name, (lever, overrides) in CONTINUED.items():
            print(f"{name:28s} {lever}, then {' '.join(overrides)}")
        return
    if args.misses is not None:
        torch.set_num_threads(1)
        print(pd.DataFrame(misses(args.misses, args.actions, args.root.resolve())).to_string(index=False))
        return
    if args.motion:
        print(pd.DataFrame(motion(args.actions, args.root.resolve())).to_string(index=False))
        return
    unknown = [n for n in args.levers.split(",") if n not in LEVERS and n not in CONTINUED]
    if unknown or args.out is None:
        parser.error(f"unknown levers {unknown}: allowed {[*LEVERS, *CONTINUED]}" if unknown else "--out is required")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    if args.sensitivity is not None:
        rows = sensitivity(args.actions, args.root.resolve(), [float(x) for x in args.sensitivity.split(",")])
        pd.DataFrame(rows).to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
        print(pd.DataFrame(rows).to_string(index=False))
        return
    done = set(pd.read_csv(args.out)["lever"]) if args.out.exists() else set()
    for name in args.levers.split(","):
        if name in done:
            continue
        if name in CONTINUED:
            lever, continued = CONTINUED[name]
            row = measure(name, LEVERS[lever], args.actions, args.root.resolve(), continued)
        else:
            row = measure(name, LEVERS[name], args.actions, args.root.resolve())
        print(OmegaConf.to_yaml(row), flush=True)
        frame = pd.DataFrame([row])
        frame.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)


if __name__ == "__main__":
    main()
