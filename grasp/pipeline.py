"""The runner's stages: collect -> train -> evaluate, each cached by the config that
determines it, and the results written as CSV (always) and to W&B (per logger.wandb.mode)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from grasp.config import ConfigError, config_hash, validate
from grasp.envs.base import Task
from grasp.envs.observe import env_step_frames
from grasp.eval.journal import JOURNAL_NAME, EpisodeJournal
from grasp.eval.metrics import RESULT_COLUMNS, to_markdown, tuning_objective, write_results
from grasp.eval.oracle import fit_state_readout, oracle_key, oracle_success
from grasp.eval.pictures import episode_pictures, training_curves
from grasp.eval.protocol import Protocol, load_or_make_protocol
from grasp.loggers import WandbRun, flat_config
from grasp.planners.base import Planner
from grasp.planners.mpc import EpisodeOutcome, PixelObserver, run_mpc
from grasp.train.dataset import FRAME_STYLE, TrajectoryDataset, load_or_collect
from grasp.train.trainer import load_checkpoint, load_or_train, read_resume_state, resume_path
from grasp.utils import (AUTOCAST_DTYPES, Stopwatch, atomic_path, compile_world_model, derive_seed, resolve_device,
                         seed_everything)

log = logging.getLogger(__name__)


def _hydra_config():
    """This Hydra run's own config (choices, overrides), or None outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _choice(group: str) -> str | None:
    """The option picked for a config group in this Hydra run (None outside one or when unset)."""
    hydra_cfg = _hydra_config()
    return None if hydra_cfg is None else hydra_cfg.runtime.choices.get(group)


def planner_name(cfg: DictConfig) -> str:
    """The planner's config name (planner=<name>), or its class name outside a Hydra run."""
    return _choice("planner") or str(cfg.planner._target_).rsplit(".", 1)[-1].replace("Planner", "").lower()


def variant_name(cfg: DictConfig) -> str:
    """What a results row and a W&B run are labelled by: the ablation row (ablation=<name>) when one
    is picked, else the planner's name."""
    return _choice("ablation") or planner_name(cfg)


def wandb_tags(cfg: DictConfig, task: Task) -> list[str]:
    planner = planner_name(cfg)
    tags = [f"env:{task.name}", f"planner:{planner}", f"exp:{cfg.exp_name}", f"H:{cfg.horizon}"]
    ablation = _choice("ablation") or (planner.removeprefix("grasp_") if planner.startswith("grasp_no_") else None)
    return tags + ([f"ablation:{ablation}"] if ablation else [])


def wandb_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's resolved config, flattened, plus its variant and command-line overrides."""
    hydra_cfg = _hydra_config()
    overrides = "" if hydra_cfg is None else " ".join(hydra_cfg.overrides.task)
    return {**flat_config(cfg), "variant": variant_name(cfg), "overrides": overrides}


def instantiate_checked(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, but a constructor's ValueError/TypeError surfaces as one
    ConfigError naming the config section, not a nested InstantiationException."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"config section '{key}' ({node.get('_target_')}): {cause}") from exc


def goal_weights(cfg: DictConfig, world_model, task: Task) -> list[float] | None:
    """Default for a null planner.state_weights on state models: 1 on the task's goal_dims, 0
    elsewhere, so goal costs look at what success looks at (positions, not velocities).
    None (keep the planner's own value) when the user set one or the model is latent."""
    if cfg.planner.get("state_weights") is not None or world_model.state_dim != task.state_dim:
        return None
    return [1.0 if i in task.goal_dims else 0.0 for i in range(task.state_dim)]


#: iterations whose virtual states a pixel model's plan strip shows
PLAN_STRIP_ROWS = 5


def build_planner(cfg: DictConfig, world_model, task: Task) -> Planner:
    kwargs: dict[str, Any] = {"action_low": task.action_low.tolist(), "action_high": task.action_high.tolist()}
    weights = goal_weights(cfg, world_model, task)
    if weights is not None:
        kwargs["state_weights"] = weights
    if observes_pixels(cfg) and cfg.eval.get("pictures", 0) and cfg.planner.get("snapshots") == 0:
        kwargs["snapshots"] = PLAN_STRIP_ROWS  # what the plan strips of pixel models show
    planner = instantiate_checked(cfg.planner, "planner", world_model=world_model, **kwargs)
    planner.autocast_dtype = AUTOCAST_DTYPES[cfg.get("precision", "fp32")]
    return planner


def task_version(cfg: DictConfig) -> int:
    """The env class's `version` (its state layout and dynamics), read without building it."""
    return int(getattr(hydra.utils.get_class(cfg.env._target_), "version", 1))


def observes_pixels(cfg: DictConfig) -> bool:
    """Whether the configured world model reads frames (its class's `observation`)."""
    return getattr(hydra.utils.get_class(cfg.world_model._target_), "observation", "state") == "pixels"


def frame_size(cfg: DictConfig) -> int | None:
    """The frame size a pixel model's dataset is rendered at; None for state models."""
    return int(cfg.world_model.frame_size) if observes_pixels(cfg) else None


def data_key(cfg: DictConfig) -> str:
    size = frame_size(cfg)
    frames = [{"frame_size": size, **FRAME_STYLE}] if size else []
    return config_hash(cfg.env, task_version(cfg), cfg.data, *frames)


#: train keys that change how training is saved or fails or what is measured after it, not what a
#: finished training produces (nonfinite=skip and stop give the same model whenever stop would have
#: finished; oracle horizons missing from a cached model are measured when a run needs them)
_TRAIN_KEYS_NOT_HASHED = ("checkpoint_every", "nonfinite", "oracle_horizons")


def model_key(cfg: DictConfig) -> str:
    train = {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items() if k not in _TRAIN_KEYS_NOT_HASHED}
    return config_hash(data_key(cfg), cfg.data.val_fraction, cfg.world_model, train)


def preflight(cfg: DictConfig, task: Task | None = None) -> Task:
    """Every check a job makes before it starts working, cheap and free of side effects: the
    schema and ranges (grasp.config.validate), the device, the env, model and planner
    constructors' own checks, the data policy and a given protocol file. Returns the task (built
    here unless given). The runner calls it first, and the sweeper (hydra_plugins/grasp_sweeper/) on every
    job of a sweep before any runs."""
    validate(cfg)
    try:
        resolve_device(cfg.device)
    except RuntimeError as exc:
        raise ConfigError(f"config key 'device': {exc}") from exc
    task = instantiate_checked(cfg.env, "env") if task is None else task
    data_policy(cfg, task)
    if "evaluate" in cfg.stages and cfg.eval.protocol is not None:
        evaluation_protocol(cfg, task)
    model = instantiate_checked(cfg.world_model, "world_model", state_dim=task.state_dim, action_dim=task.action_dim)
    build_planner(cfg, model, task)
    return task


def run(cfg: DictConfig, output_dir: str | Path) -> pd.DataFrame | None:
    """Run the configured stages; return the per-episode results (None without evaluate)."""
    output_dir = Path(output_dir)
    watch = Stopwatch()
    started = time.perf_counter()
    seed_everything(int(cfg.seed))
    task = preflight(cfg)  # bad knobs or files fail now, before minutes of collection and training
    device = resolve_device(cfg.device)
    dims = (task.state_dim, task.action_dim)
    name = planner_name(cfg)
    protocol = evaluation_protocol(cfg, task) if "evaluate" in cfg.stages else None
    finished = finished_evaluation(cfg, output_dir)
    if finished is not None:  # a finished job of a rerun sweep: nothing to collect, train or plan
        log.info("resume: %s already holds all %d episodes of this config; not running them again",
                 output_dir / JOURNAL_NAME, len(finished))
        print(f"\n{to_markdown(write_results(finished, output_dir))}\n(resumed: {output_dir / 'results.csv'})\n",
              flush=True)
        task.close()
        return finished

    wandb_run = WandbRun(cfg.logger.wandb, output_dir, name=f"{variant_name(cfg)}-H{cfg.horizon}-{cfg.seed}",
                         config=wandb_config(cfg), tags=wandb_tags(cfg, task), job_type=name,
                         run_id=_interrupted_run_id(cfg, task))
    watch.seconds["setup"] = time.perf_counter() - started
    results = None
    try:
        if "train" not in cfg.stages and "evaluate" not in cfg.stages:
            with watch("collect"):
                _dataset(cfg, task)
            return None
        with watch("world_model"):
            model, model_metrics = _world_model(cfg, task, dims, device, wandb_run, output_dir, watch)
        if "evaluate" in cfg.stages:
            results = evaluate(cfg, task, model, name, device, output_dir, wandb_run, protocol, model_metrics, watch)
    finally:
        _report_timings(watch, time.perf_counter() - started, output_dir, wandb_run)
        wandb_run.finish()
        task.close()
    return results


def _report_timings(watch: Stopwatch, total: float, output_dir: Path, wandb_run: WandbRun) -> None:
    """Where the job's time went, as <output_dir>/timings.json, W&B summary time/* and a log line:
    setup, collect, train (world_model without collect), plan, env, divergence, logging, other."""
    sections = dict(watch.seconds)
    world_model = sections.pop("world_model", 0.0)
    sections["train"] = max(0.0, world_model - sections.get("collect", 0.0))
    sections["other"] = max(0.0, total - sum(sections.values()))
    timings = {f"{key}_s": round(value, 4) for key, value in sections.items()} | {"total_s": round(total, 4)}
    with atomic_path(output_dir / "timings.json") as tmp:
        tmp.write_text(json.dumps(timings, indent=1) + "\n")
    wandb_run.summary({f"time/{key}": value for key, value in timings.items()})
    log.info("time: %s", ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()))


def _data_path(cfg: DictConfig, task: Task) -> Path:
    return Path(cfg.paths.data_dir) / task.name / f"{data_key(cfg)}.npz"


def data_policy(cfg: DictConfig, task: Task) -> str:
    """data.policy with `auto` resolved to the task's default; scripted needs a task that has one."""
    policy = task.default_data_policy if cfg.data.policy == "auto" else str(cfg.data.policy)
    if policy == "scripted" and not task.has_scripted_policy:
        raise ConfigError(f"data.policy=scripted: env {task.name!r} has no scripted exploration policy; "
                          f"allowed here: auto, uniform, colored")
    return policy


def _dataset(cfg: DictConfig, task: Task):
    data_cfg = OmegaConf.create({**OmegaConf.to_container(cfg.data, resolve=True), "policy": data_policy(cfg, task),
                                 "frame_size": frame_size(cfg)})
    return load_or_collect(_data_path(cfg, task), task, data_cfg, data_key(cfg),
                           allow_collect="collect" in cfg.stages, progress=cfg.progress)


def _checkpoint_path(cfg: DictConfig, task: Task) -> Path:
    return Path(cfg.paths.checkpoint_dir) / task.name / f"{model_key(cfg)}.pt"


def _interrupted_run_id(cfg: DictConfig, task: Task) -> str | None:
    """The W&B run id of an interrupted training of this model, so its curves continue in one run."""
    if cfg.checkpoint is not None or "train" not in cfg.stages:
        return None
    saved = read_resume_state(resume_path(_checkpoint_path(cfg, task)))
    return None if saved is None else saved.get("wandb_run_id")


def _world_model(cfg: DictConfig, task: Task, dims, device: torch.device, wandb_run: WandbRun, output_dir: Path,
                 watch: Stopwatch | None = None):
    """The model and its validation metrics (from training or from the checkpoint); its training
    curves go to <output_dir>/pictures/training_curves.png."""
    if cfg.checkpoint is not None:
        model, payload = load_checkpoint(cfg.checkpoint, device, expect_env=task.name, expect_dims=dims)
        log.info("train: using checkpoint %s", cfg.checkpoint)
        data_path = payload.get("data_path")  # absent or gone: trained elsewhere, no held-out episodes here

        def held_out_data():
            return TrajectoryDataset.load(data_path) if data_path and Path(data_path).exists() else None

        return model, _with_oracle(cfg, task, model, payload.get("metrics"), held_out_data)
    watch = Stopwatch() if watch is None else watch

    def dataset():
        with watch("collect"):
            return _dataset(cfg, task)

    def task_metrics(model, train_set, val_set) -> dict[str, float]:
        return {**fit_state_readout(model, train_set, val_set, seed=int(cfg.train.seed)),
                **oracle_success(model, val_set, task.success, oracle_horizons(cfg))}

    model, info = load_or_train(_checkpoint_path(cfg, task), cfg.world_model, dataset, cfg.train,
                                cfg.data.val_fraction, task.name, dims, device,
                                meta={"data_hash": data_key(cfg), "data_path": str(_data_path(cfg, task))},
                                allow_train="train" in cfg.stages, progress=cfg.progress,
                                log_fn=wandb_run.log, resume_meta={"wandb_run_id": wandb_run.id},
                                after_training=task_metrics)
    metrics = _with_oracle(cfg, task, model, info.get("metrics"), dataset)
    if metrics:
        wandb_run.summary({f"world_model/{k}": v for k, v in metrics.items()})
    if info.get("history"):
        curves = training_curves(info["history"], output_dir / "pictures" / "training_curves.png")
        wandb_run.log_media(images={"pictures/training_curves": curves})
    return model, metrics


def _with_oracle(cfg: DictConfig, task: Task, model, metrics: dict | None, data) -> dict[str, float]:
    """The model's metrics, with its oracle success at the run's horizon measured on the held-out
    episodes of `data()` (the model's dataset, or None) when a model cached before that horizon
    was asked for lacks it; printed (report_model_quality)."""
    metrics = dict(metrics or {})
    if "evaluate" in cfg.stages and oracle_key(cfg.horizon) not in metrics:
        try:
            dataset = data()
        except FileNotFoundError as exc:
            dataset = None
            log.warning("oracle: no held-out episodes to measure oracle success@%d on (%s)", cfg.horizon, exc)
        if dataset is not None:
            held_out = dataset.split(cfg.data.val_fraction)[1]
            metrics.update(oracle_success(model, held_out, task.success, [int(cfg.horizon)]))
    report_model_quality(metrics, task)
    return metrics


def oracle_horizons(cfg: DictConfig) -> list[int]:
    """The horizons (model steps) a trained model's oracle success is measured at: train.oracle_horizons,
    or the run's horizon when that is null."""
    horizons = cfg.train.get("oracle_horizons")
    return [int(cfg.horizon)] if horizons is None else sorted({int(h) for h in horizons} | {int(cfg.horizon)})


def report_model_quality(metrics: dict[str, float], task: Task) -> None:
    """Print what limits planning in this model: its held-out errors and its oracle success (the
    share of held-out trajectories it predicts to within the task's success rule from their real
    actions: the ceiling of an open-loop planner)."""
    oracle = {k.split("@")[1]: v for k, v in metrics.items() if k.startswith("val/oracle_success@")}
    parts = [f"one-step MSE {metrics['val/one_step_mse']:.4g}"] if "val/one_step_mse" in metrics else []
    parts += [f"oracle success@{h} ({float(h) * task.env_steps_per_model_step:g} env steps) {100 * v:.0f} %"
              for h, v in sorted(oracle.items(), key=lambda kv: int(kv[0])) if np.isfinite(v)]
    if "val/state_readout_rmse" in metrics:
        parts.append(f"state readout RMSE {metrics['val/state_readout_rmse']:.3g}")
    if parts:
        print(f"world model: {', '.join(parts)}", flush=True)


def _model_quality(metrics: dict[str, float], horizon: int) -> dict[str, float]:
    """The world model's held-out errors for the results rows: one-step MSE (normalised), the
    raw-unit RMSE after the open-loop validation rollout (train.rollout_len steps), the oracle
    success at the row's horizon and a latent model's state readout error."""
    rollout = [v for k, v in metrics.items() if k.startswith("val/rollout") and k.endswith("_rmse_raw")]
    return {"model_val_mse": metrics.get("val/one_step_mse", float("nan")),
            "model_val_rollout_rmse": rollout[0] if rollout else float("nan"),
            "model_oracle_success": metrics.get(oracle_key(horizon), float("nan")),
            "model_readout_rmse": metrics.get("val/state_readout_rmse", float("nan"))}


def protocol_key(cfg: DictConfig, policy: str) -> str:
    return config_hash(cfg.env, task_version(cfg), cfg.horizon, cfg.seed, cfg.eval.episodes, cfg.eval.goal_source, policy,
                       cfg.data.correlation)


def evaluation_protocol(cfg: DictConfig, task: Task) -> Protocol:
    """The start/goal pairs: eval.protocol's file, or the cached pairs of this cell (drawn once,
    shared by every planner)."""
    episodes = int(cfg.eval.episodes)
    if cfg.eval.protocol is not None:
        try:
            protocol = Protocol.load(cfg.eval.protocol)
            protocol.check(task, cfg.eval.protocol, episodes)
        except ValueError as exc:
            raise ConfigError(f"eval.protocol: {exc}") from exc
        log.info("evaluate: start/goal pairs from %s", cfg.eval.protocol)
        return protocol.head(episodes)
    policy = data_policy(cfg, task)
    path = Path(cfg.paths.protocol_dir) / task.name / f"{protocol_key(cfg, policy)}.json"
    return load_or_make_protocol(path, task, episodes, int(cfg.seed), int(cfg.horizon), str(cfg.eval.goal_source),
                                 policy, float(cfg.data.correlation))


def run_objective(cfg: DictConfig, results: pd.DataFrame) -> float:
    """What a sweeper maximises for this job (eval.objective_time_weight)."""
    return tuning_objective(results, float(cfg.eval.get("objective_time_weight", 0.0)))


#: run-level keys that never change a result row (where things go, how they are shown)
_KEYS_NOT_IN_RESULTS = ("progress", "logger", "paths", "resume", "stages", "hydra")
#: eval keys that only choose what else is logged
_EVAL_KEYS_NOT_IN_RESULTS = ("pictures", "plan_curves", "objective_time_weight")


def evaluation_key(cfg: DictConfig) -> str:
    """Hash of everything that decides an evaluation's result rows (the resolved config less
    _KEYS_NOT_IN_RESULTS, plus the planner and variant names the rows carry): a journal is only
    resumed under the same key."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in _KEYS_NOT_IN_RESULTS:
        plain.pop(key, None)
    for key in _EVAL_KEYS_NOT_IN_RESULTS:
        plain["eval"].pop(key, None)
    plain["train"] = {k: v for k, v in plain["train"].items() if k not in _TRAIN_KEYS_NOT_HASHED}
    return config_hash(plain, planner_name(cfg), variant_name(cfg))


def _journal(cfg: DictConfig, output_dir: Path) -> EpisodeJournal:
    return EpisodeJournal(Path(output_dir) / JOURNAL_NAME, evaluation_key(cfg), int(cfg.eval.episodes))


def finished_evaluation(cfg: DictConfig, output_dir: Path) -> pd.DataFrame | None:
    """With resume=true, the results of a run dir whose journal holds every episode of this
    config (a sweep's finished job, rerun): nothing needs to run. None otherwise."""
    if not cfg.get("resume", False) or "evaluate" not in cfg.stages:
        return None
    rows = _journal(cfg, output_dir).read()
    episodes = int(cfg.eval.episodes)
    if len(rows) < episodes:
        return None
    return pd.DataFrame([rows[i] for i in range(episodes)], columns=RESULT_COLUMNS)


def result_row(cfg: DictConfig, task: Task, planner: Planner, name: str, episode: int, episode_seed: int,
               outcome: EpisodeOutcome, model_metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "exp_name": cfg.exp_name, "planner": name, "variant": variant_name(cfg), "env": task.name,
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
        **_model_quality(model_metrics, planner.horizon),
    }


def batch_seed(seed: int, first_episode: int) -> int:
    """The planner noise seed of the batch of episodes starting at `first_episode`: batches do not
    share draws, so a resumed evaluation replans a batch exactly as the interrupted run did."""
    return derive_seed(seed, 1) if first_episode == 0 else derive_seed(seed, 1, first_episode)


def _evaluate_batch(cfg: DictConfig, task: Task, planner: Planner, protocol: Protocol, episodes: range,
                    device: torch.device, watch: Stopwatch) -> list[EpisodeOutcome]:
    """MPC on one batch of episodes: their simulators side by side, one planner call per step."""
    index = list(episodes)
    tasks = [task] + [hydra.utils.instantiate(cfg.env) for _ in index[1:]]
    generator = torch.Generator(device=device).manual_seed(batch_seed(int(cfg.seed), index[0]))
    seeds = [protocol.episode_seeds[i] for i in index]
    try:
        observer = PixelObserver(cfg.world_model.frame_size, cfg.world_model.history) if observes_pixels(cfg) else None
        return run_mpc(tasks, planner, protocol.starts[index], protocol.goals[index], max_steps=int(cfg.eval.max_steps),
                       replan_every=int(cfg.eval.replan_every), open_loop=bool(cfg.eval.open_loop),
                       generator=generator, progress=cfg.progress, observer=observer, stopwatch=watch,
                       noise_keys=seeds if cfg.eval.get("noise_streams", "shared") == "per_episode" else None)
    finally:
        for extra in tasks[1:]:
            extra.close()


def evaluate(cfg: DictConfig, task: Task, model, name: str, device: torch.device, output_dir: Path,
             wandb_run: WandbRun, protocol: Protocol | None = None,
             model_metrics: dict[str, float] | None = None, watch: Stopwatch | None = None) -> pd.DataFrame:
    """Closed-loop evaluation in batches of eval.batch_size episodes. Each finished batch's rows go
    to the journal at once; with resume=true the batches already there are not run again."""
    watch = Stopwatch() if watch is None else watch
    episodes, batch = int(cfg.eval.episodes), int(cfg.eval.get("batch_size", cfg.eval.episodes))
    protocol = evaluation_protocol(cfg, task) if protocol is None else protocol
    journal = _journal(cfg, output_dir)
    done = journal.start(resume=bool(cfg.get("resume", False)))
    if cfg.get("compile", False):
        compile_world_model(model, cfg.compile)
    planner = build_planner(cfg, model, task)
    log.info("evaluate: %s on %s, %d episodes in batches of %d, horizon %d, %s", name, task.name, episodes,
             min(batch, episodes), planner.horizon,
             "open loop" if cfg.eval.open_loop else f"MPC replanning every {cfg.eval.replan_every}")
    started = time.perf_counter()
    shown: list[EpisodeOutcome] = []  # the first batch's outcomes, when it ran here: plan curves and pictures
    bar = tqdm(total=episodes, initial=len(done), desc="evaluate", unit="episode", disable=not cfg.progress,
               mininterval=1.0)
    for first in range(0, episodes, batch):
        index = range(first, min(first + batch, episodes))
        if all(i in done for i in index):
            continue
        outcomes = _evaluate_batch(cfg, task, planner, protocol, index, device, watch)
        rows = [result_row(cfg, task, planner, name, i, protocol.episode_seeds[i], outcome, model_metrics or {})
                for i, outcome in zip(index, outcomes)]
        with watch("logging"):
            new = [row for row in rows if row["episode"] not in done]  # rows of a torn batch stay as first written
            journal.append(new)
            done.update((row["episode"], row) for row in new)
        for row in new:
            if row["nonfinite_plans"]:
                log.warning("evaluate: episode %d: %d plan(s) hit NaN/Inf in the model or the planner's loss; the "
                            "best finite plan was used (column nonfinite_plans)", row["episode"], row["nonfinite_plans"])
        shown = outcomes if first == 0 else shown
        bar.update(len(new))
    bar.close()
    elapsed = time.perf_counter() - started
    with watch("logging"):  # results files, W&B, pictures
        results = pd.DataFrame([done[i] for i in range(episodes)], columns=RESULT_COLUMNS)
        table = write_results(results, output_dir)
        print(f"\n{to_markdown(table)}\n(results: {output_dir / 'results.csv'}, {elapsed:.1f} s)\n", flush=True)

        wandb_run.define_axis("episode/*", "episode/index")
        for i, row in enumerate(results.to_dict("records")):
            wandb_run.log({"episode/index": i, **{f"episode/{k}": row[k] for k in (
                "success", "success_any_step", "model_success", "steps", "final_distance", "model_final_distance",
                "plan_time", "time_to_success", "plan_time_per_step", "model_divergence")}})
        wandb_run.log_table("episodes", results)
        log_plan_curves(wandb_run, [o.first_plan_info for o in shown[: int(cfg.eval.get("plan_curves", 0))]])
        if observes_pixels(cfg):
            for i, outcome in enumerate(shown[: int(cfg.eval.get("pictures", 0))]):
                # stacked actions: the video shows every env step, replayed from the episode's start
                env_frames = (env_step_frames(task, protocol.starts[i], outcome.actions, int(cfg.world_model.frame_size))
                              if task.action_chunk > 1 else None)
                wandb_run.log_media(*episode_pictures(model, outcome, output_dir / "pictures", f"episode{i}",
                                                      env_frames))
        summary = table.iloc[0].to_dict()
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
                           "eval/episodes": episodes, "eval/wall_time_s": elapsed,
                           "eval/objective": run_objective(cfg, results)})
    return results


#: info curves recorded at some iterations only -> the entry that says which
PLAN_EVENTS = {"sync_cost": "sync_iteration", "sync_cost_before": "sync_iteration", "rollout_cost": "rollout_iteration"}


def plan_curves(infos: list[dict | None]) -> list[dict[str, float]]:
    """W&B rows, one per optimisation iteration, from the first plan() call of some episodes:
    plan/ep<i>/<curve> for every per-iteration curve, and sync / rollout costs at the
    iterations where they were measured."""
    rows: dict[int, dict[str, float]] = {}
    skip = set(PLAN_EVENTS) | set(PLAN_EVENTS.values()) | {"restart_costs"}
    for episode, info in enumerate(infos):
        if not info:
            continue
        iterations = int(info.get("iterations", 0))
        for key, value in info.items():
            if key not in skip and torch.is_tensor(value) and value.ndim == 1 and len(value) == iterations:
                for k, v in enumerate(value.tolist()):
                    rows.setdefault(k, {})[f"plan/ep{episode}/{key}"] = v
        for key, where in PLAN_EVENTS.items():
            if key in info and where in info:
                for k, v in zip(info[where].tolist(), info[key].tolist()):
                    rows.setdefault(k, {})[f"plan/ep{episode}/{key}"] = v
    return [{"plan/iteration": k, **rows[k]} for k in sorted(rows)]


def log_plan_curves(wandb_run: WandbRun, infos: list[dict | None]) -> None:
    rows = plan_curves(infos)
    if rows:
        wandb_run.define_axis("plan/*", "plan/iteration")
        for row in rows:
            wandb_run.log(row)
