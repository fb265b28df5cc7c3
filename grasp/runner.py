"""The runner: resolve the job, collect, train, evaluate, report. Each stage is cached by the
key the job derived (grasp.keys); results go to CSV always and to W&B per logger.wandb.mode."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from grasp import stages, tracking
from grasp.errors import ConfigError
from grasp.eval.journal import JOURNAL_NAME
from grasp.eval.metrics import to_markdown, write_results
from grasp.eval.protocol import Protocol
from grasp.eval.runner import evaluate, finished_evaluation
from grasp.job import Job, evaluation_protocol, resolve
from grasp.loggers import WandbRun
from grasp.utils import Stopwatch, atomic_path, seed_everything, torch_threads

log = logging.getLogger(__name__)


def run(cfg: DictConfig, output_dir: str | Path) -> pd.DataFrame | None:
    """Run the configured stages; return the per-episode results (None without evaluate)."""
    started, watch = time.perf_counter(), Stopwatch()
    seed_everything(int(cfg.seed))
    job, protocol, finished = start(cfg, output_dir)
    if finished is not None:  # a finished job of a rerun sweep: nothing to collect, train or plan
        report_resumed(job, finished)
        job.close()
        return finished
    wandb_run = tracking.open_run(job)
    watch.seconds["setup"] = time.perf_counter() - started
    results = None
    try:
        with torch_threads(job.cfg.get("threads")):
            log.info("threads: %d torch thread(s)", torch.get_num_threads())
            results = run_stages(job, protocol, wandb_run, watch)
    finally:
        report_timings(watch, time.perf_counter() - started, job.output_dir, wandb_run)
        wandb_run.finish()
        job.close()
    return results


def run_stages(job: Job, protocol: Protocol | None, wandb_run: WandbRun, watch: Stopwatch) -> pd.DataFrame | None:
    """Collect, train and evaluate, as the job's stages ask."""
    if "train" not in job.stages and "evaluate" not in job.stages:
        with watch("collect"):
            stages.dataset(job)
        return None
    with watch("world_model"):
        model, model_metrics = stages.world_model(job, wandb_run, watch)
        tracking.log_checkpoint(job, wandb_run)
    if "evaluate" in job.stages:
        return evaluate(job, model, protocol, model_metrics, wandb_run, watch)
    return None


def start(cfg: DictConfig, output_dir: str | Path) -> tuple[Job, Protocol | None, pd.DataFrame | None]:
    """The job, its evaluation protocol and a rerun's finished results: every config value and
    input file (checkpoint, dataset, protocol, journal) is checked here, before minutes of
    collection and training; what is wrong with them is raised as one ConfigError."""
    job = None
    try:
        job = resolve(cfg, output_dir)
        protocol = evaluation_protocol(job) if "evaluate" in job.stages else None
        return job, protocol, finished_evaluation(job)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, and the files' own errors
        if job is not None:
            job.close()
        raise exc if isinstance(exc, ConfigError) else ConfigError(str(exc)) from exc


def report_resumed(job: Job, results: pd.DataFrame) -> None:
    journal = job.output_dir / JOURNAL_NAME
    log.info("resume: %s already holds all %d episodes of this config; not running them again", journal, len(results))
    table = write_results(results, job.output_dir)
    print(f"\n{to_markdown(table)}\n(resumed: {job.output_dir / 'results.csv'})\n", flush=True)


def report_timings(watch: Stopwatch, total: float, output_dir: Path, wandb_run: WandbRun) -> None:
    """Where the job's time went, as <output_dir>/timings.json, W&B summary time/* and a log line:
    setup, collect, train (world_model without collect and planner_data), planner_data (planning the
    planner-data rounds' episodes), plan, env, divergence, logging, other."""
    sections = dict(watch.seconds)
    world_model = sections.pop("world_model", 0.0)
    sections["train"] = max(0.0, world_model - sections.get("collect", 0.0) - sections.get("planner_data", 0.0))
    sections["other"] = max(0.0, total - sum(sections.values()))
    timings = {f"{key}_s": round(value, 4) for key, value in sections.items()} | {"total_s": round(total, 4)}
    with atomic_path(output_dir / "timings.json") as tmp:
        tmp.write_text(json.dumps(timings, indent=1) + "\n")
    wandb_run.summary({f"time/{key}": value for key, value in timings.items()})
    log.info("time: %s", ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()))
