"""World-model pretraining on one-step transitions, validation, and checkpoints."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from grasp.models.base import WorldModel
from grasp.train.dataset import TrajectoryDataset
from grasp.utils import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


def build_world_model(model_cfg: DictConfig | dict, state_dim: int, action_dim: int) -> WorldModel:
    return hydra.utils.instantiate(model_cfg, state_dim=state_dim, action_dim=action_dim)


@torch.no_grad()
def validate(model: WorldModel, val: TrajectoryDataset, rollout_len: int) -> dict[str, float]:
    """One-step MSE (normalised space) and the error after an open-loop rollout of
    `rollout_len` steps from every validation start (normalised MSE and raw RMSE)."""
    device = model.device
    s, a, s_next = (torch.as_tensor(x, device=device) for x in val.transitions())
    one_step = torch.mean((model.step(model.encode(s), a) - model.encode(s_next)) ** 2).item()
    states = torch.as_tensor(val.states, device=device)
    actions = torch.as_tensor(val.actions, device=device)
    starts = states[:, : states.shape[1] - rollout_len]
    n_starts = starts.shape[1]
    windows = torch.stack([actions[:, i : i + rollout_len] for i in range(n_starts)], dim=1)
    targets = states[:, rollout_len : rollout_len + n_starts]
    predicted = model.rollout(model.encode(starts), windows)[..., -1, :]
    multi_norm = torch.mean((predicted - model.encode(targets)) ** 2).item()
    multi_raw = torch.sqrt(torch.mean((model.decode(predicted) - targets) ** 2)).item()
    return {"val/one_step_mse": one_step, f"val/rollout{rollout_len}_mse": multi_norm,
            f"val/rollout{rollout_len}_rmse_raw": multi_raw}


def train_world_model(model: WorldModel, data: TrajectoryDataset, train_cfg: DictConfig, val_fraction: float,
                      progress: bool = True, log_fn=None) -> dict[str, Any]:
    """Fit the model's normalisation, then minimise the standardised one-step residual error.
    Returns the training history and the final validation metrics."""
    device = model.device
    generator = torch.Generator(device="cpu").manual_seed(int(train_cfg.seed))
    torch.manual_seed(int(train_cfg.seed))
    train_set, val_set = data.split(val_fraction)
    s, a, s_next = (torch.as_tensor(x, device=device) for x in train_set.transitions())
    model.fit_normalization(s, s_next)
    with torch.no_grad():
        target = (model.encode(s_next) - model.encode(s) - model.delta_mean) / model.delta_std
        s_norm = model.encode(s)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps = int(train_cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, steps + 1), desc="train", unit="step", disable=not progress, mininterval=1.0)
    running = None
    for step in bar:
        idx = torch.randint(0, len(s_norm), (int(train_cfg.batch_size),), generator=generator).to(device)
        loss = torch.mean((model.predict_delta(s_norm[idx], a[idx]) - target[idx]) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % int(train_cfg.eval_every) == 0 or step == steps:
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"world-model training loss became {loss_value} at step {step}; "
                                         "lower train.lr or check the dataset")
            metrics = {"train/step": step, "train/loss": loss_value, **validate(model, val_set, int(train_cfg.rollout_len))}
            history.append(metrics)
            running = metrics
            bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{metrics['val/one_step_mse']:.4f}")
            if log_fn is not None:
                log_fn(metrics)
    model.eval()
    return {"history": history, "final": running}


def save_checkpoint(path: Path, model: WorldModel, model_cfg: DictConfig, meta: dict[str, Any]) -> None:
    """state_dict + resolved model config + normalisation statistics + provenance."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": OmegaConf.to_container(model_cfg, resolve=True),
        "state_dim": model.state_dim,
        "action_dim": model.action_dim,
        "normalization": {k: v.detach().cpu() for k, v in model.state_dict().items() if k.endswith(("_mean", "_std"))},
        **meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, device: torch.device, expect_env: str | None = None,
                    expect_dims: tuple[int, int] | None = None) -> tuple[WorldModel, dict[str, Any]]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise ValueError(f"checkpoint {path} could not be read as a grasp checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} is not a grasp checkpoint of version {CHECKPOINT_VERSION}")
    if expect_env is not None and payload.get("env") != expect_env:
        raise ValueError(f"checkpoint {path} was trained on env {payload.get('env')!r}, this run uses {expect_env!r}")
    if expect_dims is not None and (payload["state_dim"], payload["action_dim"]) != expect_dims:
        raise ValueError(f"checkpoint {path} has (state_dim, action_dim) = "
                         f"{(payload['state_dim'], payload['action_dim'])}, the task needs {expect_dims}")
    model = build_world_model(payload["model_config"], payload["state_dim"], payload["action_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def load_or_train(path: Path, model_cfg: DictConfig, data_fn, train_cfg: DictConfig, val_fraction: float,
                  task_name: str, dims: tuple[int, int], device: torch.device, meta: dict[str, Any],
                  allow_train: bool, progress: bool = True, log_fn=None) -> tuple[WorldModel, dict[str, Any]]:
    """The cached checkpoint at `path`, training it first when missing (one process at a time).
    `data_fn` is called only when training is needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            model, payload = load_checkpoint(path, device, expect_env=task_name, expect_dims=dims)
            log.info("train: reusing cached world model %s", path)
            return model, payload
        if not allow_train:
            raise FileNotFoundError(
                f"no cached world model at {path} for this model config, and 'train' is not in `stages`; "
                "add it back to `stages` or set `checkpoint=<path>`"
            )
        data = data_fn()
        model = build_world_model(model_cfg, *dims).to(device)
        result = train_world_model(model, data, train_cfg, val_fraction, progress=progress, log_fn=log_fn)
        save_checkpoint(path, model, model_cfg, {**meta, "env": task_name, "metrics": result["final"],
                                                 "history": result["history"]})
        log.info("train: wrote %s; %s", path, _fmt(result["final"]))
        return model, {"metrics": result["final"], "history": result["history"]}


def _fmt(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in (metrics or {}).items())


