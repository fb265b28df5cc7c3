"""The resolved job: the config read once at start-up into one frozen object that every stage
reads. `resolve` makes every check a job makes before it starts working, cheap and free of side
effects, so a bad knob or file fails before minutes of collection and training."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from grasp import keys, planners
from grasp.config import check_config, instantiate_checked, round_planner_names
from grasp.envs.base import Task
from grasp.errors import ConfigError
from grasp.eval.protocol import Protocol, load_or_make_protocol
from grasp.models.base import WorldModel
from grasp.planners.base import Planner
from grasp.utils import resolve_device, use_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannerRound:
    """One round's cache entries, derived once by grasp.job.resolve."""

    #: 1, 2, ...: round k plans on the model of round k-1 (round 0: the exploration data's model)
    index: int
    #: the start/goal pairs' seed (planner_data.seed + index - 1)
    seed: int
    #: (planner, file) of each of the round's planners: its replayed episodes (key: the model they
    #: were planned on, the settings, the planner)
    planned: tuple[tuple[str, Path], ...]
    #: the model trained on the exploration episodes plus rounds 1..index
    checkpoint_path: Path


@dataclass(frozen=True)
class Job:
    """What a run is: its read-only config and everything derived from it."""

    cfg: DictConfig
    #: the simulator the job's checks built (the runner's first episode runs in it)
    task: Task
    device: torch.device
    #: planning horizon in model steps: `horizon`, which planner.horizon follows
    horizon: int
    #: planner=<name>, and the ablation row (ablation=<name>) when one is picked
    planner: str
    ablation: str | None
    #: data.policy with `auto` resolved to the task's default
    data_policy: str
    #: what the world model reads from the dataset: frames of this size, or None (state vectors)
    frame_size: int | None
    data_key: str
    model_key: str
    evaluation_key: str
    data_path: Path
    checkpoint_path: Path
    #: the start/goal pairs: eval.protocol's file, or this cell's cached pairs
    protocol_path: Path
    #: the run directory (results, journal, pictures, W&B files)
    output_dir: Path
    #: the command line's overrides ('' outside a Hydra run)
    overrides: str
    #: planner-data rounds (planner_data.rounds; empty when off) and the configs of the planners
    #: they plan with, by name
    planner_rounds: tuple[PlannerRound, ...] = ()
    round_planners: dict[str, DictConfig] | None = None

    @property
    def model_path(self) -> Path:
        """The checkpoint the job evaluates: `checkpoint`, else the last planner-data round's
        model, else the model of the exploration data."""
        if self.cfg.checkpoint is not None:
            return Path(self.cfg.checkpoint)
        return self.planner_rounds[-1].checkpoint_path if self.planner_rounds else self.checkpoint_path

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.cfg.stages)

    @property
    def variant(self) -> str:
        """What results rows and W&B runs are labelled by: the ablation row, else the planner."""
        return self.ablation or self.planner

    @property
    def run_name(self) -> str:
        """The run's label in W&B: <variant>-H<horizon>-<seed>."""
        return f"{self.variant}-H{self.horizon}-{self.cfg.seed}"

    def close(self) -> None:
        self.task.close()


def data_policy(cfg: DictConfig, task: Task) -> str:
    """data.policy with `auto` resolved to the task's default; scripted needs a task that has one."""
    policy = task.default_data_policy if cfg.data.policy == "auto" else str(cfg.data.policy)
    if policy == "scripted" and not task.has_scripted_policy:
        raise ConfigError(f"data.policy=scripted: env {task.name!r} has no scripted exploration policy; "
                          f"allowed here: auto, uniform, colored")
    return policy


def _check_one_horizon(cfg: DictConfig) -> int:
    """`horizon` is the run's; the planner section reads it (${horizon}). An override of
    planner.horizon to another value would split the run's names from its plans: one error."""
    horizon = int(cfg.horizon)
    planned = cfg.planner.get("horizon")
    if planned is not None and planned != horizon:
        raise ConfigError(f"config key 'planner.horizon' = {planned!r} differs from 'horizon' = {horizon}: set the "
                          f"planning horizon with horizon=<T> (planner.horizon follows it)")
    return horizon


def resolve(cfg: DictConfig, output_dir: str | Path | None = None, task: Task | None = None) -> Job:
    """Check the config (grasp.config.check_config: schema and ranges; one horizon; the device;
    the env, model and planner constructors' own checks; the data policy; a given protocol file)
    and derive the job from it. `task`: a simulator of this env to reuse (the sweeper checks
    every job of a sweep with one per env before any runs)."""
    check_config(cfg)
    horizon = _check_one_horizon(cfg)
    try:
        device = use_device(resolve_device(cfg.device))
    except RuntimeError as exc:
        raise ConfigError(f"config key 'device': {exc}") from exc
    task = instantiate_checked(cfg.env, "env") if task is None else task
    policy = data_policy(cfg, task)
    model = instantiate_checked(cfg.world_model, "world_model", state_dim=task.state_dim, action_dim=task.action_dim)
    if model.pred_steps > cfg.data.episode_len:
        raise ConfigError(f"config key 'world_model.pred_steps' = {model.pred_steps}: allowed at most "
                          f"data.episode_len ({cfg.data.episode_len}), the longest training window an episode holds")
    substeps = getattr(model, "substeps", 1)
    if substeps > 1 and substeps != task.action_chunk:
        raise ConfigError(f"config key 'world_model.substeps' = {substeps}: allowed 1, or env.action_chunk "
                          f"({task.action_chunk}) to take a stacked action one env action per sub-step")
    planner, ablation = keys.planner_name(cfg), keys.ablation_name()
    data_key = keys.data_key(cfg, model.frame_size)
    model_key = keys.model_key(cfg, data_key)
    paths = cfg.paths
    round_planners, rounds = planner_rounds(cfg, task, model, model_key)
    job = Job(
        cfg=_read_only(cfg), task=task, device=device, horizon=horizon, planner=planner, ablation=ablation,
        data_policy=policy, frame_size=model.frame_size, data_key=data_key, model_key=model_key,
        evaluation_key=keys.evaluation_key(cfg, planner, ablation or planner),
        data_path=Path(paths.data_dir) / task.name / f"{data_key}.npz",
        checkpoint_path=Path(paths.checkpoint_dir) / task.name / f"{model_key}.pt",
        protocol_path=(Path(cfg.eval.protocol) if cfg.eval.protocol is not None else
                       Path(paths.protocol_dir) / task.name / f"{keys.protocol_key(cfg, policy)}.json"),
        output_dir=Path(output_dir if output_dir is not None else _configured_output_dir(cfg)),
        overrides=keys.command_line_overrides(), planner_rounds=rounds, round_planners=round_planners)
    for name in round_planners or {}:
        build_round_planner(job, name, model)
    if "evaluate" in job.stages and cfg.eval.protocol is not None:
        evaluation_protocol(job)
    build_planner(job, model)
    return job


def planner_rounds(cfg: DictConfig, task: Task, model: WorldModel,
                   model_key: str) -> tuple[dict[str, DictConfig] | None, tuple[PlannerRound, ...]]:
    """The planner-data rounds' planner configs (each of planner_data.planner as `tuning` tunes it,
    at planner_data.horizon) and cache entries; (None, ()) when planner_data.rounds is 0."""
    settings = cfg.planner_data
    if int(settings.rounds) == 0:
        return None, ()
    if model.frame_size is not None:
        raise ConfigError("config key 'planner_data.rounds': planner data needs a state world model "
                          "(its episodes hold simulator states, not frames); allowed here: 0")
    tuning = cfg.tuning.name if cfg.get("tuning") is not None else None
    nodes = {name: planners.tuned_planner_config(name, tuning, int(settings.horizon))
             for name in round_planner_names(cfg)}
    folder = Path(cfg.paths.data_dir) / task.name
    rounds = tuple(
        PlannerRound(index=i, seed=int(settings.seed) + i - 1,
                     planned=tuple((name, folder / f"planned_{key}.npz") for name, key in planned.items()),
                     checkpoint_path=Path(cfg.paths.checkpoint_dir) / task.name / f"{model_round}.pt")
        for i, (planned, model_round) in enumerate(keys.planner_round_keys(cfg, model_key, nodes), start=1))
    return nodes, rounds


def build_round_planner(job: Job, name: str, world_model: WorldModel) -> Planner:
    """Planner `name` of the planner-data rounds on `world_model`, with the task's bounds and goal weights."""
    return build_planner(job, world_model, node=job.round_planners[name])


def _configured_output_dir(cfg: DictConfig) -> str:
    """paths.output_dir (Hydra's run dir), or the working directory where it cannot resolve."""
    return OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False) or "."


def _read_only(cfg: DictConfig) -> DictConfig:
    frozen = copy.deepcopy(cfg)
    OmegaConf.set_readonly(frozen, True)
    return frozen


def evaluation_protocol(job: Job) -> Protocol:
    """The start/goal pairs: eval.protocol's file, or the cached pairs of this cell (drawn once,
    shared by every planner)."""
    cfg, episodes = job.cfg, int(job.cfg.eval.episodes)
    if cfg.eval.protocol is not None:
        try:
            protocol = Protocol.load(job.protocol_path)
            protocol.check(job.task, cfg.eval.protocol, episodes)
        except ValueError as exc:
            raise ConfigError(f"eval.protocol: {exc}") from exc
        log.info("evaluate: start/goal pairs from %s", cfg.eval.protocol)
        return protocol.head(episodes)
    return load_or_make_protocol(job.protocol_path, job.task, episodes, int(cfg.seed), job.horizon,
                                 str(cfg.eval.goal_source), job.data_policy, float(cfg.data.correlation))


#: iterations whose virtual states a frame-reading model's plan strip shows
PLAN_STRIP_ROWS = 5


def goal_weights(planner: DictConfig, world_model: WorldModel, task: Task) -> list[float] | None:
    """Default for a null planner.state_weights on state models: 1 on the task's goal_dims, 0
    elsewhere, so goal costs look at what success looks at (positions, not velocities).
    None (keep the planner's own value) when the user set one or the model is latent."""
    if planner.get("state_weights") is not None or world_model.state_dim != task.state_dim:
        return None
    return [1.0 if i in task.goal_dims else 0.0 for i in range(task.state_dim)]


def build_planner(job: Job, world_model: WorldModel, node: DictConfig | None = None) -> Planner:
    """The job's planner on `world_model`, through the one planner factory (grasp.planners.build),
    with the task's action bounds, goal weights, the snapshots its plan pictures need and the
    run's precision."""
    cfg, task = job.cfg, job.task
    node = cfg.planner if node is None else node
    kwargs: dict[str, Any] = {"action_low": task.action_low.tolist(), "action_high": task.action_high.tolist()}
    weights = goal_weights(node, world_model, task)
    if weights is not None:
        kwargs["state_weights"] = weights
    if job.frame_size is not None and cfg.eval.get("pictures", 0) and node.get("snapshots") == 0:
        kwargs["snapshots"] = PLAN_STRIP_ROWS
    planner = planners.build(node, world_model, **kwargs)
    planner.use_precision(cfg.get("precision", "fp32"))
    return planner
