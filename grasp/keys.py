"""Cache keys and names: the hash of everything that decides a dataset, a model, a start/goal
protocol and an evaluation's rows, and the names a run is labelled by. Called once, by
grasp.job.resolve; every stage reads the results from the Job."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from grasp.config import config_hash
from grasp.train.dataset import FRAME_STYLE

#: train keys that change how training is saved or fails or what is measured after it, not what a
#: finished training produces (nonfinite=skip and stop give the same model whenever stop would have
#: finished; oracle horizons missing from a cached model are measured when a run needs them)
TRAIN_KEYS_NOT_HASHED = ("checkpoint_every", "nonfinite", "oracle_horizons")
#: train keys added after models were cached: hashed only when set away from this value, which
#: trains what the code before them trained, so the caches of earlier runs stay valid
TRAIN_KEYS_HASHED_WHEN_SET = {"ema": 0.0, "precision": "fp32"}
#: data keys added after datasets were cached, hashed only when set away from this value (one shard
#: is the one random stream of the datasets before the key)
DATA_KEYS_HASHED_WHEN_SET = {"shards": 1, "random_steps": 0.0}
#: data keys that decide how fast a dataset is collected, not what it holds
DATA_KEYS_NOT_HASHED = ("workers",)
#: world_model keys added after models were cached, hashed only when set away from this value
MODEL_KEYS_HASHED_WHEN_SET = {"state_loss_weights": None}
#: planner_data keys that decide how a round's model trains, not what its planners plan
ROUND_TRAINING_KEYS = ("finetune_steps", "finetune_lr")
#: run-level keys that never change a result row (where things go, how they are shown)
KEYS_NOT_IN_RESULTS = ("progress", "logger", "paths", "resume", "stages", "hydra", "threads")
#: eval keys that only choose what else is logged
EVAL_KEYS_NOT_IN_RESULTS = ("pictures", "plan_curves", "objective_time_weight")


def hydra_choice(group: str) -> str | None:
    """The option picked for a config group in this Hydra run (None outside one or when unset)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def command_line_overrides() -> str:
    """This Hydra run's overrides as typed ('' outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    return " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""


def planner_name(cfg: DictConfig) -> str:
    """The planner's config name (planner=<name>), or its class name outside a Hydra run."""
    return hydra_choice("planner") or str(cfg.planner._target_).rsplit(".", 1)[-1].replace("Planner", "").lower()


def ablation_name() -> str | None:
    """The ablation row a run belongs to (ablation=<name>, conf/ablation/), or None."""
    return hydra_choice("ablation")


def task_version(cfg: DictConfig) -> int:
    """The env class's `version` (its state layout and dynamics), read without building it."""
    return int(getattr(hydra.utils.get_class(cfg.env._target_), "version", 1))


def data_key(cfg: DictConfig, frame_size: int | None) -> str:
    frames = [{"frame_size": frame_size, **FRAME_STYLE}] if frame_size else []
    return config_hash(cfg.env, task_version(cfg), hashed_data(cfg), *frames)


def hashed_data(cfg: DictConfig) -> dict[str, Any]:
    return _hashed(cfg.data, DATA_KEYS_NOT_HASHED, DATA_KEYS_HASHED_WHEN_SET)


def hashed_train(cfg: DictConfig) -> dict[str, Any]:
    return _hashed(cfg.train, TRAIN_KEYS_NOT_HASHED, TRAIN_KEYS_HASHED_WHEN_SET)


def hashed_world_model(cfg: DictConfig) -> dict[str, Any]:
    return _hashed(cfg.world_model, (), MODEL_KEYS_HASHED_WHEN_SET)


def _hashed(node: DictConfig, not_hashed: tuple[str, ...], hashed_when_set: dict[str, Any]) -> dict[str, Any]:
    """A section's resolved entries less those that never change its result and those still at
    the value that trains or collects what the code before them did."""
    plain = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in plain.items()
            if k not in not_hashed and not (k in hashed_when_set and v == hashed_when_set[k])}


def model_key(cfg: DictConfig, data: str) -> str:
    return config_hash(data, cfg.data.val_fraction, hashed_world_model(cfg), hashed_train(cfg))


def planner_round_keys(cfg: DictConfig, model: str,
                       planners: dict[str, Any]) -> list[tuple[dict[str, str], str]]:
    """({planner: episodes key}, model key) of each planner-data round: a planner's episodes are
    decided by the model they were planned on, the round settings and the planner's config; a
    round's model by the first model's key and every round's episodes so far."""
    settings = {k: v for k, v in OmegaConf.to_container(cfg.planner_data, resolve=True).items()
                if k not in ("rounds", "planner", *ROUND_TRAINING_KEYS)}
    # how a round's model trains (from scratch: nothing beyond `train`); unhashed when from scratch,
    # as before the knobs existed
    finetune = ({k: _resolved(cfg.planner_data[k]) for k in ROUND_TRAINING_KEYS}
                if int(cfg.planner_data.finetune_steps) > 0 else None)
    keys, planned, previous = [], [], model
    for index in range(1, int(cfg.planner_data.rounds) + 1):
        this_round = {name: config_hash(previous, settings, _resolved(node), index) for name, node in planners.items()}
        planned += this_round.values()
        previous = config_hash(model, *planned) if finetune is None else config_hash(model, *planned, finetune)
        keys.append((this_round, previous))
    return keys


def protocol_key(cfg: DictConfig, policy: str) -> str:
    return config_hash(cfg.env, task_version(cfg), cfg.horizon, cfg.seed, cfg.eval.episodes, cfg.eval.goal_source,
                       policy, cfg.data.correlation)


def _resolved(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def evaluation_key(cfg: DictConfig, planner: str, variant: str) -> str:
    """Hash of everything that decides an evaluation's result rows (the resolved config less
    KEYS_NOT_IN_RESULTS, plus the planner and variant names the rows carry): a journal is only
    resumed under the same key."""
    plain = {key: _resolved(cfg[key]) for key in cfg if key not in KEYS_NOT_IN_RESULTS}  # paths may need Hydra
    for key in EVAL_KEYS_NOT_IN_RESULTS:
        plain["eval"].pop(key, None)
    if not plain.get("planner_data", {}).get("rounds"):  # off: the keys of runs from before the section
        plain.pop("planner_data", None)
    elif not plain["planner_data"]["finetune_steps"]:  # from scratch: the keys of runs from before fine-tuning
        for key in ROUND_TRAINING_KEYS:
            plain["planner_data"].pop(key)
    plain["data"], plain["train"], plain["world_model"] = hashed_data(cfg), hashed_train(cfg), hashed_world_model(cfg)
    return config_hash(plain, planner, variant)
