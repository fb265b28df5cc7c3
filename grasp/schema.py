"""Typed schema of the config: dataclasses registered in Hydra's ConfigStore.

Run-level sections (top-level keys, data, train, eval, paths, logger) are the base of
conf/config.yaml (`- base_config` first in its defaults). Hydra composes the YAML onto them, so a
typo'd key or a value of the wrong type anywhere in a preset, an ablation row or on the command
line fails at compose time with the key's full name. Values come from the YAML only: every field
here is MISSING, so there is one place for defaults.

The planner, world_model and env sections change shape with their `_target_`. Their schemas are
derived from the target class's constructor (names, annotated types), registered under
schema/<section>/<Class>, and checked by `check_sections` right after composition (grasp.run
and grasp.config.validate call it), before anything is built.

Ranges and allowed choices are checked by grasp.config.validate and by the constructors, which
name the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from grasp.errors import ConfigError

SECTIONS = ("env", "world_model", "planner")
#: top-level keys that are not the run's: Hydra's own node (present with return_hydra_config)
NOT_RUN_KEYS = ("hydra",)


@dataclass
class DataConf:
    episodes: int = MISSING
    episode_len: int = MISSING
    policy: str = MISSING
    correlation: float = MISSING
    val_fraction: float = MISSING
    seed: int = MISSING
    random_steps: float = MISSING
    shards: int = MISSING
    workers: Optional[int] = MISSING


@dataclass
class TrainConf:
    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    eval_every: int = MISSING
    rollout_len: int = MISSING
    checkpoint_every: int = MISSING
    nonfinite: str = MISSING
    select: str = MISSING
    patience: int = MISSING
    ema: float = MISSING
    precision: str = MISSING
    oracle_horizons: Optional[List[int]] = MISSING
    seed: int = MISSING


@dataclass
class PlannerDataConf:
    rounds: int = MISSING
    planner: Any = MISSING  # a planner config name or a list of them
    episodes: int = MISSING
    horizon: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    finetune_steps: int = MISSING
    finetune_lr: Optional[float] = MISSING


@dataclass
class EvalConf:
    episodes: int = MISSING
    batch_size: int = MISSING
    goal_source: str = MISSING
    protocol: Optional[str] = MISSING
    max_steps: int = MISSING
    replan_every: int = MISSING
    open_loop: bool = MISSING
    plan_curves: int = MISSING
    pictures: int = MISSING
    noise_streams: str = MISSING
    objective_time_weight: float = MISSING


@dataclass
class PathsConf:
    root_dir: str = MISSING
    output_root: str = MISSING
    cache_dir: str = MISSING
    data_dir: str = MISSING
    checkpoint_dir: str = MISSING
    protocol_dir: str = MISSING
    output_dir: Optional[str] = MISSING  # Hydra's run dir: None when composed outside a run


@dataclass
class WandbConf:
    mode: Optional[str] = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING
    job_type: Optional[str] = MISSING
    name: Optional[str] = MISSING
    tags: List[str] = MISSING
    log_checkpoint: bool = MISSING


@dataclass
class LoggerConf:
    wandb: WandbConf = field(default_factory=WandbConf)


@dataclass
class TuningConf:
    name: str = MISSING


@dataclass
class RunConf:
    exp_name: str = MISSING
    seed: int = MISSING
    device: str = MISSING
    compile: Any = MISSING  # false or a torch.compile mode
    precision: str = MISSING
    threads: Optional[int] = MISSING
    horizon: int = MISSING
    stages: List[str] = MISSING
    checkpoint: Optional[str] = MISSING
    progress: bool = MISSING
    resume: bool = MISSING
    data: DataConf = field(default_factory=DataConf)
    train: TrainConf = field(default_factory=TrainConf)
    planner_data: PlannerDataConf = field(default_factory=PlannerDataConf)
    eval: EvalConf = field(default_factory=EvalConf)
    paths: PathsConf = field(default_factory=PathsConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    tuning: Optional[TuningConf] = None
    # shaped by their _target_: checked by check_sections
    env: Any = MISSING
    world_model: Any = MISSING
    planner: Any = MISSING


def register() -> None:
    """Idempotent: put base_config in Hydra's ConfigStore (conf/config.yaml builds on it)."""
    ConfigStore.instance().store(name="base_config", node=RunConf)


# ---- sections shaped by their _target_ --------------------------------------------------------
_PLAIN = (int, float, bool, str)


def _field_type(annotation: Any) -> Any:
    """An OmegaConf-supported type for a constructor annotation: plain scalars (optionally None)
    are checked; anything richer (unions, sequences, arrays) is left as Any."""
    if annotation in _PLAIN:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return Optional[inner] if inner in _PLAIN else Any
    return Any


def _constructor_params(cls: type) -> dict[str, Any]:
    """name -> annotation of every keyword the class takes, following **kwargs into the parents
    (planners pass their shared knobs on to the base class as **base)."""
    params: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        hints = typing.get_type_hints(init)
        signature = inspect.signature(init)
        for name, param in signature.parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            params.setdefault(name, hints.get(name, Any))
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            break
        forwarded = klass.__dict__.get("kwargs_go_to")  # a wrapper that passes **kwargs to another class
        if forwarded is not None:
            for name, annotation in _constructor_params(forwarded).items():
                params.setdefault(name, annotation)
            break
    return params


@functools.lru_cache(maxsize=None)
def section_schema(section: str, target: str) -> type:
    """The dataclass of a section whose `_target_` is `target`, registered in the ConfigStore as
    schema/<section>/<Class>. Every field is MISSING: it checks names and types, never supplies values."""
    cls = hydra.utils.get_class(target)
    params = _constructor_params(cls)
    params.pop("world_model", None)  # passed at instantiation
    fields = [("_target_", str, dataclasses.field(default=target))]
    fields += [(name, _field_type(annotation), dataclasses.field(default=MISSING)) for name, annotation in params.items()]
    schema = dataclasses.make_dataclass(f"{cls.__name__}Conf", fields)
    ConfigStore.instance().store(group=f"schema/{section}", name=cls.__name__, node=schema)
    return schema


def check_sections(cfg: DictConfig) -> None:
    """Check the run-level keys against RunConf (keys added with `+` skip compose's checks) and
    the env, world_model and planner sections against their target's schema: one ConfigError
    naming the key and what its target accepts."""
    run_level = {key: value for key, value in OmegaConf.to_container(cfg, resolve=False).items()
                 if key not in SECTIONS + NOT_RUN_KEYS}
    try:  # keys added with `+` on the command line bypass compose's checks
        OmegaConf.merge(OmegaConf.structured(RunConf), run_level)
    except ConfigKeyError as exc:
        raise ConfigError(f"config key '{exc.full_key}' is unknown: allowed keys here "
                          f"{_known_keys(RunConf, str(exc.full_key))}") from exc
    except (ValidationError, OmegaConfBaseException) as exc:
        raise ConfigError(f"config key '{exc.full_key}' has the wrong type: {exc.msg}") from exc
    for section in SECTIONS:
        node = cfg.get(section)
        if node is None:
            continue
        target = node.get("_target_")
        try:
            schema = section_schema(section, str(target))
        except Exception as exc:
            raise ConfigError(f"config key '{section}._target_' = {target!r} is not an importable class: {exc}") from exc
        values = OmegaConf.to_container(node, resolve=True)
        try:
            OmegaConf.merge(OmegaConf.structured(schema), values)
        except ConfigKeyError as exc:
            known = sorted(f.name for f in dataclasses.fields(schema) if f.name != "_target_")
            raise ConfigError(f"config key '{section}.{exc.key}' is unknown to {target}: allowed keys {known}") from exc
        except (ValidationError, OmegaConfBaseException) as exc:
            wanted = {f.name: f.type for f in dataclasses.fields(schema)}.get(str(exc.key), "another type")
            raise ConfigError(f"config key '{section}.{exc.key}' = {values.get(exc.key)!r} has the wrong type: "
                              f"{target} expects {_type_name(wanted)}") from exc


def _known_keys(schema: type, full_key: str) -> list[str]:
    """The keys the schema allows beside `full_key` (the fields of its parent section)."""
    node: Any = schema
    for part in full_key.split(".")[:-1]:
        child = typing.get_type_hints(node).get(part)
        if not dataclasses.is_dataclass(child):
            break
        node = child
    return sorted(f.name for f in dataclasses.fields(node))


def _type_name(kind: Any) -> str:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    base = args[0] if len(args) == 1 else kind
    name = getattr(base, "__name__", str(base))
    return f"{name} or null" if args else name
