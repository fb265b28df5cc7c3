"""The runner's first two stages, each cached by the key the job derived: the exploration
dataset (collect) and the world model (load or train, then any planner-data rounds, then its
held-out quality: errors, state readout and oracle success, printed and logged)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf

from grasp.config import instantiate_checked
from grasp.eval.oracle import fit_state_readout, oracle_key, oracle_success
from grasp.eval.pictures import training_curves
from grasp.job import Job
from grasp.planner_data import held_out_fraction, load_or_plan, merged, round_metrics
from grasp.loggers import WandbRun
from grasp.models.base import WorldModel
from grasp.train.dataset import TrajectoryDataset, load_or_collect
from grasp.train.trainer import load_checkpoint, load_or_train
from grasp.utils import Stopwatch, seed_everything

log = logging.getLogger(__name__)


def dataset(job: Job) -> TrajectoryDataset:
    """The job's exploration episodes: cached at job.data_path, collected when missing (and
    `collect` is a stage), with the frames the world model reads."""
    cfg = job.cfg
    data_cfg = OmegaConf.create({**OmegaConf.to_container(cfg.data, resolve=True), "policy": job.data_policy,
                                 "frame_size": job.frame_size})
    make_task = partial(instantiate_checked, OmegaConf.to_container(cfg.env, resolve=True), "env")
    return load_or_collect(job.data_path, job.task, data_cfg, job.data_key, allow_collect="collect" in job.stages,
                           progress=cfg.progress, make_task=make_task)


def world_model(job: Job, wandb_run: WandbRun, watch: Stopwatch) -> tuple[WorldModel, dict]:
    """The model and its validation metrics (from training or from the checkpoint); its training
    curves go to <job.output_dir>/pictures/training_curves.png."""
    cfg, task = job.cfg, job.task
    dims = (task.state_dim, task.action_dim)
    if cfg.checkpoint is not None:
        model, payload = load_checkpoint(cfg.checkpoint, job.device, expect_env=task.name, expect_dims=dims)
        log.info("train: using checkpoint %s", cfg.checkpoint)
        data_path = payload.get("data_path")  # absent or gone: trained elsewhere, no held-out episodes here

        def held_out_data():
            return TrajectoryDataset.load(data_path) if data_path and Path(data_path).exists() else None

        return model, with_oracle(job, model, payload.get("metrics"), held_out_data)

    def timed_dataset():
        with watch("collect"):
            return dataset(job)

    def task_metrics(model, train_set, val_set) -> dict[str, float]:
        return {**fit_state_readout(model, train_set, val_set, seed=int(cfg.train.seed)),
                **oracle_success(model, val_set, task.success, oracle_horizons(job))}

    wandb_run.define_axis("train/*", "train/step")  # training curves on their own step, not W&B's
    wandb_run.define_axis("val/*", "train/step")

    def trained(path: Path, data_fn, val_fraction: float, after_training,
                start: WorldModel | None = None) -> tuple[WorldModel, dict]:
        return load_or_train(path, cfg.world_model, data_fn, cfg.train if start is None else finetuning(cfg),
                             val_fraction, task.name, dims, job.device,
                             meta={"data_hash": job.data_key, "data_path": str(job.data_path)},
                             allow_train="train" in job.stages, progress=cfg.progress,
                             log_fn=wandb_run.log, resume_meta={"wandb_run_id": wandb_run.id},
                             after_training=after_training, start=start)

    model, info = trained(job.checkpoint_path, timed_dataset, cfg.data.val_fraction, task_metrics)
    # round k plans on models[k - 1]; the rounds' episodes are loaded or planned only when a round's
    # model must be trained, in order
    models, planned = [model], []
    val_fraction = float(cfg.data.val_fraction)
    for planner_round in job.planner_rounds:
        def round_data(upto: int = planner_round.index) -> TrajectoryDataset:
            while len(planned) < upto:
                earlier = job.planner_rounds[len(planned)]
                planned.append([load_or_plan(job, earlier, name, models[len(planned)], watch)
                                for name, _ in earlier.planned])
            data = merged(timed_dataset(), [p for episodes in planned for p in episodes], val_fraction)
            seed_everything(int(cfg.seed))  # the same initial weights whether the episodes were planned now or not
            return data

        def with_round_stats(model, train_set, val_set):
            return {**task_metrics(model, train_set, val_set),
                    **round_metrics([p for episodes in planned for p in episodes])}

        added = planner_round.index * len(planner_round.planned) * int(cfg.planner_data.episodes)
        model, info = trained(planner_round.checkpoint_path, round_data,
                              held_out_fraction(int(cfg.data.episodes), added, val_fraction), with_round_stats,
                              start=models[-1] if int(cfg.planner_data.finetune_steps) > 0 else None)
        models.append(model)
    metrics = with_oracle(job, model, info.get("metrics"), timed_dataset)
    if metrics:
        wandb_run.summary({f"world_model/{k}": v for k, v in metrics.items()})
    if info.get("history"):
        curves = training_curves(info["history"], job.output_dir / "pictures" / "training_curves.png")
        wandb_run.log_media(images={"pictures/training_curves": curves})
    return model, metrics


def finetuning(cfg: DictConfig) -> DictConfig:
    """`train` for continuing a round's model: planner_data.finetune_steps steps at peak rate
    planner_data.finetune_lr (train.lr when null)."""
    lr = cfg.planner_data.finetune_lr
    return OmegaConf.merge(cfg.train, {"steps": int(cfg.planner_data.finetune_steps),
                                       "lr": float(cfg.train.lr if lr is None else lr)})


def with_oracle(job: Job, model: WorldModel, metrics: dict | None,
                data: Callable[[], TrajectoryDataset | None]) -> dict[str, float]:
    """The model's metrics, with its oracle success at the run's horizon measured on the held-out
    episodes of `data()` (the model's dataset, or None) when a model cached before that horizon
    was asked for lacks it; printed (report_model_quality)."""
    metrics = dict(metrics or {})
    if "evaluate" in job.stages and oracle_key(job.horizon) not in metrics:
        try:
            held = data()
        except FileNotFoundError as exc:
            held = None
            log.warning("oracle: no held-out episodes to measure oracle success@%d on (%s)", job.horizon, exc)
        if held is not None:
            held_out = held.split(job.cfg.data.val_fraction)[1]
            metrics.update(oracle_success(model, held_out, job.task.success, [job.horizon]))
    report_model_quality(metrics, job.task.env_steps_per_model_step)
    return metrics


def oracle_horizons(job: Job) -> list[int]:
    """The horizons (model steps) a trained model's oracle success is measured at: train.oracle_horizons,
    or the run's horizon when that is null."""
    horizons = job.cfg.train.get("oracle_horizons")
    return [job.horizon] if horizons is None else sorted({int(h) for h in horizons} | {job.horizon})


def report_model_quality(metrics: dict[str, float], env_steps_per_model_step: int) -> None:
    """Print what limits planning in this model: its held-out errors and its oracle success (the
    share of held-out trajectories it predicts to within the task's success rule from their real
    actions: the ceiling of an open-loop planner)."""
    oracle = {k.split("@")[1]: v for k, v in metrics.items() if k.startswith("val/oracle_success@")}
    parts = [f"one-step MSE {metrics['val/one_step_mse']:.4g}"] if "val/one_step_mse" in metrics else []
    parts += [f"oracle success@{h} ({float(h) * env_steps_per_model_step:g} env steps) {100 * v:.0f} %"
              for h, v in sorted(oracle.items(), key=lambda kv: int(kv[0])) if np.isfinite(v)]
    if "val/state_readout_rmse" in metrics:
        parts.append(f"state readout RMSE {metrics['val/state_readout_rmse']:.3g}")
    if parts:
        print(f"world model: {', '.join(parts)}", flush=True)
