"""Config plumbing: the conf/ location, OmegaConf resolvers, config hashes, early validation."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from grasp.errors import ConfigError
from grasp.loggers import wandb_mode
from grasp.schema import check_sections, register
from grasp.precision import AUTOCAST_DTYPES, PRECISIONS
from grasp.utils import is_device_name

PACKAGE_DIR = Path(__file__).resolve().parent
#: a source checkout's root (pyproject.toml and conf/ beside the package); None once installed
SOURCE_ROOT: Path | None = (PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file()
                            and (PACKAGE_DIR.parent / "conf").is_dir() else None)
#: the configs: a wheel carries them as grasp/conf, a checkout has them at its root
CONF_DIR = PACKAGE_DIR / "conf" if (PACKAGE_DIR / "conf").is_dir() else PACKAGE_DIR.parent / "conf"
#: environment variable that moves paths.root_dir (outputs/, caches) elsewhere
ROOT_ENV = "GRASP_ROOT"


def root_dir() -> Path:
    """Where outputs/ lands: $GRASP_ROOT, else a source checkout's root (whatever the cwd, as the
    README's commands expect), else the working directory (an installed package)."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    return SOURCE_ROOT or Path.cwd()


#: the checkout's root in a checkout (scripts, tests, docs live there); the working directory once installed
REPO_ROOT = SOURCE_ROOT or Path.cwd()

STAGES = ("collect", "train", "evaluate")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DATA_POLICIES = ("auto", "uniform", "colored", "scripted")
#: eval.goal_source: where evaluation goals come from (grasp.eval.protocol)
GOAL_SOURCES = ("random", "rollout")
NOISE_STREAMS = ("shared", "per_episode")
COMPILE_MODES = ("default", "max-autotune")
#: train.nonfinite: what a NaN/Inf loss or gradient does to training
NONFINITE_POLICIES = ("stop", "skip")
#: which weights world-model training ends with (train.select)
SELECT_POLICIES = ("last", "best")


def register_resolvers() -> None:
    """Idempotent: Hydra's main and the tests' compose both call it before composing; it also
    registers the typed schema (grasp.schema) that conf/config.yaml builds on."""
    if not OmegaConf.has_resolver("grasp_root"):
        OmegaConf.register_new_resolver("grasp_root", lambda: str(root_dir()))
    register()


register_resolvers()


def config_hash(*nodes: Any) -> str:
    """Stable short hash of resolved config nodes (dicts, lists, scalars)."""
    plain = [OmegaConf.to_container(n, resolve=True) if isinstance(n, DictConfig) else n for n in nodes]
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is invalid: allowed {allowed}")


def round_planner_names(cfg: DictConfig) -> list[str]:
    """planner_data.planner as a list: one name, or several whose episodes a round adds together."""
    names = cfg.planner_data.planner
    return [str(names)] if isinstance(names, str) else [str(n) for n in names or []]


def _check_planner_data(cfg: DictConfig) -> None:
    settings = cfg.planner_data
    _require(isinstance(settings.rounds, int) and settings.rounds >= 0, "planner_data.rounds",
             "an integer >= 0 (0 = off)", settings.rounds)
    for key in ("episodes", "horizon", "batch_size"):
        value = settings[key]
        _require(isinstance(value, int) and value >= 1, f"planner_data.{key}", "an integer >= 1", value)
    _require(isinstance(settings.finetune_steps, int) and settings.finetune_steps >= 0, "planner_data.finetune_steps",
             "an integer >= 0 (0 = each round's model trains from scratch)", settings.finetune_steps)
    _require(settings.finetune_lr is None or settings.finetune_lr > 0, "planner_data.finetune_lr",
             "null (train.lr) or a number > 0", settings.finetune_lr)
    _require(settings.rounds == 0 or settings.horizon <= cfg.data.episode_len, "planner_data.horizon",
             f"at most data.episode_len ({cfg.data.episode_len}): a planned episode holds its plan", settings.horizon)
    names, options = round_planner_names(cfg), config_options("planner")
    _require(len(names) > 0 and len(set(names)) == len(names) and all(n in options for n in names),
             "planner_data.planner", f"one of {options}, or a list of distinct ones", settings.planner)
    _require(settings.rounds == 0 or cfg.checkpoint is None, "planner_data.rounds",
             "0 with `checkpoint` set (a given checkpoint is evaluated as it is)", settings.rounds)


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """conf/config.yaml composed by Hydra with `overrides`, outside a Hydra run (tests, scripts,
    name lookups of the planner factory); it resets Hydra's global state first."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def config_options(group: str) -> list[str]:
    """The options of a config group: the YAML files of conf/<group>/ (subfolders as a/b)."""
    folder = CONF_DIR / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def instantiate_checked(node: Any, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, but a constructor's ValueError/TypeError surfaces as one
    ConfigError naming the config section, not a nested InstantiationException."""
    import hydra
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"config section '{key}' ({node.get('_target_')}): {cause}") from exc


def check_config(cfg: DictConfig) -> None:
    """Cheap checks of the run-level keys and of the sections shaped by their _target_ (their
    keys and types, grasp.schema), done before any collection or training."""
    check_sections(cfg)
    stages = list(cfg.stages)
    _require(len(stages) > 0 and all(s in STAGES for s in stages), "stages", f"a non-empty subset of {list(STAGES)}", stages)
    _require(stages == [s for s in STAGES if s in stages], "stages", f"in the order {list(STAGES)}", stages)
    _require(is_device_name(cfg.device), "device", f"one of {list(DEVICES)}", cfg.device)
    compile_mode = cfg.get("compile", False)
    _require(compile_mode is False or compile_mode in COMPILE_MODES, "compile", f"false or one of {list(COMPILE_MODES)}",
             compile_mode)
    precision = cfg.get("precision", "fp32")
    _require(precision in PRECISIONS, "precision", f"one of {list(PRECISIONS)}", precision)
    threads = cfg.get("threads")
    _require(threads is None or (isinstance(threads, int) and threads >= 1), "threads",
             "null (as the process has them) or an integer >= 1", threads)
    wandb_mode(cfg.logger.wandb.mode)  # the config's mode, or WANDB_MODE's: a bad one fails here
    _require(isinstance(cfg.horizon, int) and cfg.horizon >= 1, "horizon", "an integer >= 1", cfg.horizon)
    _require(cfg.data.policy in DATA_POLICIES, "data.policy", f"one of {list(DATA_POLICIES)}", cfg.data.policy)
    _require(0.0 <= cfg.data.correlation < 1.0, "data.correlation", "a number in [0, 1)", cfg.data.correlation)
    _require(0.0 < cfg.data.val_fraction < 1.0, "data.val_fraction", "a number in (0, 1)", cfg.data.val_fraction)
    for key in ("data.episodes", "data.episode_len", "train.steps", "train.batch_size", "train.eval_every",
                "train.rollout_len", "eval.episodes", "eval.batch_size", "eval.max_steps", "eval.replan_every"):
        value = OmegaConf.select(cfg, key)
        _require(isinstance(value, int) and value >= 1, key, "an integer >= 1", value)
    random_steps = cfg.data.get("random_steps", 0.0)
    _require(isinstance(random_steps, (int, float)) and 0.0 <= random_steps <= 1.0, "data.random_steps",
             "a probability in [0, 1]", random_steps)
    shards, workers = cfg.data.get("shards", 1), cfg.data.get("workers")
    _require(isinstance(shards, int) and 1 <= shards <= cfg.data.episodes, "data.shards",
             f"an integer from 1 to data.episodes ({cfg.data.episodes})", shards)
    _require(workers is None or (isinstance(workers, int) and workers >= 1), "data.workers",
             "null (one per shard, at most one per CPU) or an integer >= 1", workers)
    _require(cfg.data.episodes * cfg.data.val_fraction >= 1, "data.val_fraction",
             "a fraction that leaves at least one validation episode", cfg.data.val_fraction)
    _require(cfg.train.rollout_len <= cfg.data.episode_len, "train.rollout_len",
             f"at most data.episode_len ({cfg.data.episode_len})", cfg.train.rollout_len)
    every = cfg.train.get("checkpoint_every", 0)
    _require(isinstance(every, int) and every >= 0, "train.checkpoint_every", "an integer >= 0 (0 = never)", every)
    nonfinite = cfg.train.get("nonfinite", "stop")
    _require(nonfinite in NONFINITE_POLICIES, "train.nonfinite", f"one of {list(NONFINITE_POLICIES)}", nonfinite)
    select = cfg.train.get("select", "last")
    _require(select in SELECT_POLICIES, "train.select", f"one of {list(SELECT_POLICIES)}", select)
    patience = cfg.train.get("patience", 0)
    _require(isinstance(patience, int) and patience >= 0, "train.patience", "an integer >= 0 (0 = never stop early)",
             patience)
    pictures = cfg.eval.get("pictures", 0)
    _require(isinstance(pictures, int) and pictures >= 0, "eval.pictures", "an integer >= 0", pictures)
    plan_curves = cfg.eval.get("plan_curves", 0)
    _require(isinstance(plan_curves, int) and plan_curves >= 0, "eval.plan_curves", "an integer >= 0", plan_curves)
    streams = cfg.eval.get("noise_streams", "shared")
    _require(streams in NOISE_STREAMS, "eval.noise_streams", f"one of {list(NOISE_STREAMS)}", streams)
    weight = cfg.eval.get("objective_time_weight", 0.0)
    _require(isinstance(weight, (int, float)) and weight >= 0, "eval.objective_time_weight", "a number >= 0", weight)
    _check_planner_data(cfg)
    ema = cfg.train.get("ema", 0.0)
    _require(isinstance(ema, (int, float)) and 0.0 <= ema < 1.0, "train.ema",
             "a number in [0, 1) (0 = keep the last weights)", ema)
    train_precision = cfg.train.get("precision", "fp32")
    _require(train_precision in AUTOCAST_DTYPES, "train.precision", f"one of {list(AUTOCAST_DTYPES)}", train_precision)
    _require(cfg.train.lr > 0, "train.lr", "a number > 0", cfg.train.lr)
    _require(cfg.eval.replan_every <= cfg.horizon, "eval.replan_every", f"at most horizon ({cfg.horizon})",
             cfg.eval.replan_every)
    _require(cfg.eval.goal_source in GOAL_SOURCES, "eval.goal_source", f"one of {list(GOAL_SOURCES)}",
             cfg.eval.goal_source)
    if cfg.eval.protocol is not None:
        _require(Path(cfg.eval.protocol).is_file(), "eval.protocol", "the path of an existing protocol file",
                 cfg.eval.protocol)
    if cfg.checkpoint is not None:
        _require(Path(cfg.checkpoint).is_file(), "checkpoint", "the path of an existing checkpoint file", cfg.checkpoint)
