"""What a job tells W&B (grasp.loggers.WandbRun): its run name, tags and config, the id of an
interrupted training to continue, and after an evaluation the per-episode rows, the first
plans' curves, pictures of frame-reading models and the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from grasp import provenance
from grasp.eval.mpc import EpisodeOutcome
from grasp.eval.pictures import episode_pictures
from grasp.envs.observe import env_step_frames
from grasp.job import Job
from grasp.loggers import WandbRun
from grasp.planners.base import PlanInfo
from grasp.train.trainer import read_resume_state, resume_path

#: per-episode columns logged as episode/<column>
EPISODE_COLUMNS = ("success", "success_any_step", "model_success", "steps", "final_distance", "model_final_distance",
                   "plan_time", "time_to_success", "plan_time_per_step", "model_divergence")


def tags(job: Job) -> list[str]:
    names = [f"env:{job.task.name}", f"planner:{job.planner}", f"exp:{job.cfg.exp_name}", f"H:{job.horizon}"]
    return names + ([f"ablation:{job.ablation}"] if job.ablation else [])


def config(job: Job) -> dict[str, Any]:
    """The job's resolved config, plus its variant, command-line overrides and where the run
    comes from (grasp.provenance: commit, dirty flag, package versions, device)."""
    origin = {**provenance.code_version(), "versions": provenance.versions(), "device": str(job.device)}
    return {**OmegaConf.to_container(job.cfg, resolve=True), "variant": job.variant, "overrides": job.overrides,
            "provenance": origin}


def log_checkpoint(job: Job, wandb_run: WandbRun) -> None:
    """The world model's checkpoint as a W&B artifact, when logger.wandb.log_checkpoint asks."""
    path = job.model_path
    key = job.planner_rounds[-1].checkpoint_path.stem if job.planner_rounds else job.model_key
    if job.cfg.logger.wandb.get("log_checkpoint", False) and path.is_file():
        wandb_run.log_file_artifact(path, name=f"world-model-{job.task.name}-{key}", kind="model",
                                    metadata={"model_key": key, "sha256": provenance.file_sha256(path)})


def interrupted_run_id(job: Job) -> str | None:
    """The W&B run id of an interrupted training of this model, so its curves continue in one run."""
    if job.cfg.checkpoint is not None or "train" not in job.stages:
        return None
    for checkpoint in [job.checkpoint_path, *(r.checkpoint_path for r in job.planner_rounds)]:
        saved = read_resume_state(resume_path(checkpoint))
        if saved is not None:
            return saved.get("wandb_run_id")
    return None


def open_run(job: Job) -> WandbRun:
    return WandbRun(job.cfg.logger.wandb, job.output_dir, name=job.run_name, config=config(job), tags=tags(job),
                    job_type=job.planner, run_id=interrupted_run_id(job))


def log_evaluation(job: Job, wandb_run: WandbRun, results: pd.DataFrame, summary: dict[str, Any],
                   shown: list[EpisodeOutcome], model, starts, objective: float, elapsed: float) -> None:
    """The evaluation in W&B: one row per episode on its own axis, the episodes table, the first
    plans' curves, pictures (of models that see frames) and the summary."""
    cfg = job.cfg
    wandb_run.define_axis("episode/*", "episode/index")
    for i, row in enumerate(results.to_dict("records")):
        wandb_run.log({"episode/index": i, **{f"episode/{k}": row[k] for k in EPISODE_COLUMNS}})
    wandb_run.log_table("episodes", results)
    log_plan_curves(wandb_run, [o.first_plan_info for o in shown[: int(cfg.eval.get("plan_curves", 0))]])
    for i, outcome in enumerate(shown[: int(cfg.eval.get("pictures", 0))]):
        if not outcome.frames:
            continue
        # stacked actions: the video shows every env step, replayed from the episode's start
        env_frames = (env_step_frames(job.task, starts[i], outcome.actions, job.frame_size)
                      if job.task.action_chunk > 1 else None)
        wandb_run.log_media(*episode_pictures(model, outcome, job.output_dir / "pictures", f"episode{i}", env_frames))
    wandb_run.summary({"eval/success_rate": summary["success_%"] / 100.0,
                       "eval/success_any_step_rate": summary["success_any_step_%"] / 100.0,
                       "eval/model_success_rate": summary["model_success_%"] / 100.0,
                       "eval/oracle_success_rate": summary["oracle_success_%"] / 100.0,
                       "eval/median_time_to_success_s": summary["median_time_to_success_s"],
                       "eval/mean_final_distance": summary["mean_final_distance"],
                       "eval/success_ci95_%": summary["success_ci95_%"],
                       "eval/mean_model_divergence": summary["mean_model_divergence"],
                       "eval/plan_time_per_step_s": summary["plan_time_per_step_s"],
                       "eval/nonfinite_plans": int(results["nonfinite_plans"].sum()),
                       "eval/episodes": len(results), "eval/wall_time_s": elapsed, "eval/objective": objective,
                       "provenance/checkpoint_sha256": str(results["checkpoint_sha256"].iloc[0])})


def plan_curves(infos: list[PlanInfo | None]) -> list[dict[str, float]]:
    """W&B rows, one per optimisation iteration, from the first plan() call of some episodes
    (each info one problem's, PlanInfo.select(i)): plan/ep<i>/<curve> for every declared curve,
    and every event (sync and rollout costs) at the iterations where it was measured."""
    rows: dict[int, dict[str, float]] = {}
    for episode, info in enumerate(infos):
        if not info:
            continue
        for key in info.curves:
            for k, v in enumerate(info[key].tolist()):
                rows.setdefault(k, {})[f"plan/ep{episode}/{key}"] = v
        for key, at in info.events.items():
            for k, v in zip(info[at].tolist(), info[key].tolist()):
                rows.setdefault(k, {})[f"plan/ep{episode}/{key}"] = v
    return [{"plan/iteration": k, **rows[k]} for k in sorted(rows)]


def log_plan_curves(wandb_run: WandbRun, infos: list[dict | None]) -> None:
    rows = plan_curves(infos)
    if rows:
        wandb_run.define_axis("plan/*", "plan/iteration")
        for row in rows:
            wandb_run.log(row)
