"""The evaluation runner: the job's episodes in batches (their simulators side by side, one
batched plan call per MPC step), each finished batch's result rows in the journal at once, a
resumed evaluation continuing at the first unfinished batch, then the results files."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from grasp import provenance
from grasp.eval.journal import JOURNAL_NAME, EpisodeJournal
from grasp.eval.metrics import RESULT_COLUMNS, to_markdown, tuning_objective, write_results
from grasp.eval.mpc import EpisodeOutcome, run_mpc
from grasp.eval.oracle import oracle_key
from grasp.eval.protocol import Protocol
from grasp.job import Job, build_planner
from grasp.loggers import WandbRun
from grasp.planners.base import Planner
from grasp.tracking import log_evaluation
from grasp.utils import Stopwatch, compile_world_model, derive_seed

log = logging.getLogger(__name__)


def journal(job: Job) -> EpisodeJournal:
    return EpisodeJournal(job.output_dir / JOURNAL_NAME, job.evaluation_key, int(job.cfg.eval.episodes))


def finished_evaluation(job: Job) -> pd.DataFrame | None:
    """With resume=true, the results of a run dir whose journal holds every episode of this
    config (a sweep's finished job, rerun): nothing needs to run. None otherwise."""
    if not job.cfg.get("resume", False) or "evaluate" not in job.stages:
        return None
    rows = journal(job).read()
    episodes = int(job.cfg.eval.episodes)
    if len(rows) < episodes:
        return None
    return pd.DataFrame([rows[i] for i in range(episodes)], columns=RESULT_COLUMNS)


def run_objective(cfg: DictConfig, results: pd.DataFrame) -> float:
    """What a sweeper maximises for this job (eval.objective_time_weight)."""
    return tuning_objective(results, float(cfg.eval.get("objective_time_weight", 0.0)))


def model_quality(metrics: dict[str, float], horizon: int) -> dict[str, float]:
    """The world model's held-out errors for the results rows: one-step MSE (normalised), the
    raw-unit RMSE after the open-loop validation rollout (train.rollout_len steps), the oracle
    success at the row's horizon and a latent model's state readout error."""
    rollout = [v for k, v in metrics.items() if k.startswith("val/rollout") and k.endswith("_rmse_raw")]
    return {"model_val_mse": metrics.get("val/one_step_mse", float("nan")),
            "model_val_rollout_rmse": rollout[0] if rollout else float("nan"),
            "model_oracle_success": metrics.get(oracle_key(horizon), float("nan")),
            "model_readout_rmse": metrics.get("val/state_readout_rmse", float("nan"))}


def result_row(job: Job, planner: Planner, episode: int, episode_seed: int, outcome: EpisodeOutcome,
               shared: dict[str, Any]) -> dict[str, Any]:
    cfg, task = job.cfg, job.task
    return {
        "exp_name": cfg.exp_name, "planner": job.planner, "variant": job.variant, "env": task.name,
        "horizon": planner.horizon, "horizon_env_steps": planner.horizon * task.env_steps_per_model_step,
        "seed": int(cfg.seed), "episode": episode, "episode_seed": episode_seed, "open_loop": bool(cfg.eval.open_loop),
        "success": bool(outcome.success), "success_any_step": bool(outcome.success_any_step),
        "model_success": outcome.model_success, "steps": outcome.steps, "final_distance": outcome.final_distance,
        "model_final_distance": outcome.model_final_distance,
        "plan_time": outcome.plan_time, "plan_calls": outcome.plan_calls,
        "time_to_success": outcome.time_to_success, "time_to_success_any_step": outcome.time_to_success_any_step,
        # planner diagnostics: mean iterations per plan() call; the model's rollout cost of the last plan
        "plan_iterations": float(np.mean(outcome.iterations)) if outcome.iterations else float("nan"),
        "model_final_cost": outcome.final_cost[-1] if outcome.final_cost else float("nan"),
        "plan_time_per_step": outcome.plan_time / max(outcome.steps, 1),
        "model_divergence": outcome.divergence, "model_max_divergence": outcome.max_divergence,
        "nonfinite_plans": outcome.nonfinite_plans,
        **shared,
    }


def batch_seed(seed: int, first_episode: int) -> int:
    """The planner noise seed of the batch of episodes starting at `first_episode`: batches do not
    share draws, so a resumed evaluation replans a batch exactly as the interrupted run did."""
    return derive_seed(seed, 1) if first_episode == 0 else derive_seed(seed, 1, first_episode)


def batch_generator(job: Job, first_episode: int) -> torch.Generator:
    """The planner noise of the batch starting at `first_episode`: a CPU generator whatever the
    device (draws are moved to the model, sample_normal), so a seed plans alike on CPU and GPU."""
    return torch.Generator(device="cpu").manual_seed(batch_seed(int(job.cfg.seed), first_episode))


@contextmanager
def side_by_side(job: Job, count: int):
    """`count` simulators of the job's env for one batch: the job's own first, then fresh ones,
    closed after the block."""
    tasks = [job.task] + [hydra.utils.instantiate(job.cfg.env) for _ in range(count - 1)]
    try:
        yield tasks
    finally:
        for extra in tasks[1:]:
            extra.close()


def evaluate_batch(job: Job, planner: Planner, protocol: Protocol, episodes: range,
                   watch: Stopwatch) -> list[EpisodeOutcome]:
    """MPC on one batch of episodes: their simulators side by side, one planner call per step."""
    cfg, index = job.cfg, list(episodes)
    seeds = [protocol.episode_seeds[i] for i in index]
    with side_by_side(job, len(index)) as tasks:
        return run_mpc(tasks, planner, protocol.starts[index], protocol.goals[index], max_steps=int(cfg.eval.max_steps),
                       replan_every=int(cfg.eval.replan_every), open_loop=bool(cfg.eval.open_loop),
                       generator=batch_generator(job, index[0]), progress=cfg.progress, stopwatch=watch,
                       noise_keys=seeds if cfg.eval.get("noise_streams", "shared") == "per_episode" else None)


def evaluate(job: Job, model, protocol: Protocol, model_metrics: dict[str, float], wandb_run: WandbRun,
             watch: Stopwatch) -> pd.DataFrame:
    """Closed-loop evaluation in batches of eval.batch_size episodes. Each finished batch's rows go
    to the journal at once; with resume=true the batches already there are not run again."""
    cfg = job.cfg
    episodes, batch = int(cfg.eval.episodes), int(cfg.eval.get("batch_size", cfg.eval.episodes))
    rows_journal = journal(job)
    done = rows_journal.start(resume=bool(cfg.get("resume", False)))
    if cfg.get("compile", False):
        compile_world_model(model, cfg.compile)
    planner = build_planner(job, model)
    with watch("setup"):
        planner.warm_up()
    log.info("evaluate: %s on %s, %d episodes in batches of %d, horizon %d, %s", job.planner, job.task.name, episodes,
             min(batch, episodes), planner.horizon,
             "open loop" if cfg.eval.open_loop else f"MPC replanning every {cfg.eval.replan_every}")
    started = time.perf_counter()
    shown: list[EpisodeOutcome] = []  # the first batch's outcomes, when it ran here: plan curves and pictures
    # what every row of this evaluation shares: the model's held-out quality and the provenance
    shared = {**model_quality(model_metrics, planner.horizon),
              **provenance.stamp(job.device, job.model_path), "precision": planner.precision}
    bar = tqdm(total=episodes, initial=len(done), desc="evaluate", unit="episode", disable=not cfg.progress,
               mininterval=1.0)
    for first in range(0, episodes, batch):
        index = range(first, min(first + batch, episodes))
        if all(i in done for i in index):
            continue
        outcomes = evaluate_batch(job, planner, protocol, index, watch)
        rows = [result_row(job, planner, i, protocol.episode_seeds[i], outcome, shared)
                for i, outcome in zip(index, outcomes)]
        with watch("logging"):
            new = [row for row in rows if row["episode"] not in done]  # rows of a torn batch stay as first written
            rows_journal.append(new)
            done.update((row["episode"], row) for row in new)
        _warn_nonfinite(new)
        shown = outcomes if first == 0 else shown
        bar.update(len(new))
    bar.close()
    elapsed = time.perf_counter() - started
    with watch("logging"):  # results files, W&B, pictures
        results = pd.DataFrame([done[i] for i in range(episodes)], columns=RESULT_COLUMNS)
        table = write_results(results, job.output_dir)
        print(f"\n{to_markdown(table)}\n(results: {job.output_dir / 'results.csv'}, {elapsed:.1f} s)\n", flush=True)
        log_evaluation(job, wandb_run, results, table.iloc[0].to_dict(), shown, model, protocol.starts,
                       run_objective(cfg, results), elapsed)
    return results


def _warn_nonfinite(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["nonfinite_plans"]:
            log.warning("evaluate: episode %d: %d plan(s) hit NaN/Inf in the model or the planner's loss; the "
                        "best finite plan was used (column nonfinite_plans)", row["episode"], row["nonfinite_plans"])
