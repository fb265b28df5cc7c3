"""The one planner factory: a planner from its config name (conf/planner/<name>.yaml, as Hydra
composes it) or from a config node, on a world model, with knobs overridden. The runner, the
tests, the benchmark and the study all build planners here."""

from __future__ import annotations

import functools
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from grasp.config import compose, config_options, instantiate_checked
from grasp.errors import ConfigError
from grasp.models.base import WorldModel
from grasp.planners.base import Planner


def _check_name(name: str) -> None:
    if name not in config_options("planner"):
        raise ConfigError(f"planner {name!r} is not a config of conf/planner/: allowed {config_options('planner')}")


@functools.lru_cache(maxsize=None)
def _composed(name: str) -> DictConfig:
    _check_name(name)
    return compose([f"planner={name}"]).planner


def planner_config(name: str, **overrides: Any) -> DictConfig:
    """conf/planner/<name>.yaml as Hydra composes it (presets inherit through their defaults
    lists), its ${horizon} resolved against the default config, with `overrides` merged in."""
    node = OmegaConf.create(OmegaConf.to_container(_composed(name), resolve=True))
    return OmegaConf.merge(node, overrides) if overrides else node


def tuned_planner_config(name: str, tuning: str | None, horizon: int) -> DictConfig:
    """conf/planner/<name>.yaml with conf/tuned/<tuning>/<name>.yaml applied (as `tuning=` does for
    the run's own planner), at `horizon`, resolved: a second planner beside the run's."""
    _check_name(name)
    choices = [f"planner={name}", f"horizon={int(horizon)}"] + ([f"tuning={tuning}"] if tuning else [])
    return OmegaConf.create(OmegaConf.to_container(compose(choices).planner, resolve=True))


def build(planner: str | Mapping | DictConfig, world_model: WorldModel, **overrides: Any) -> Planner:
    """A planner on `world_model`: `planner` is a config name (planner_config) or a node with a
    _target_; `overrides` are constructor keywords (horizon, action bounds, knobs). A
    constructor's ValueError/TypeError is one ConfigError naming the planner section."""
    node = planner_config(planner) if isinstance(planner, str) else planner
    return instantiate_checked(node, "planner", world_model=world_model, **overrides)
