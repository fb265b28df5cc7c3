"""What the world model can be trusted with: its accuracy on real actions, as planners need it.

`oracle_success`: held-out trajectories are rolled out in the model from their starts with the
actions that were really taken; the fraction whose predicted final state passes the task's
success rule against the true final state is the ceiling of an open-loop planner that found
exactly those actions (`model_oracle_success@H`). Trajectories whose start already meets their
own end are left out, as the evaluation protocol redraws such pairs.

`fit_state_readout`: a latent model's linear readout of the task state (grasp.models.readout),
fitted on training observations; its held-out RMSE goes beside it.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import numpy as np
import torch

from grasp.models.base import WorldModel
from grasp.models.readout import apply_linear_readout, fit_linear_readout
from grasp.train.dataset import TrajectoryDataset
from grasp.train.trainer import Episodes

log = logging.getLogger(__name__)

SuccessRule = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: observations the readout is fitted on (a fixed sample of the training set)
READOUT_SAMPLE = 4096


def oracle_key(horizon: int) -> str:
    return f"val/oracle_success@{int(horizon)}"


@torch.no_grad()
def oracle_predictions(model: WorldModel, val: TrajectoryDataset, success: SuccessRule,
                       horizons: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray] | None]:
    """{H: (predicted, true)} task states (N, D) at H model steps of the held-out trajectories
    rolled out in the model with their real actions, keeping the trajectories whose start does not
    already meet their end; None for an H longer than the episodes, for a model with no readout
    of the task state, or when no trajectory moved."""
    was_training = model.training
    model.eval()
    try:
        episodes = Episodes(model, val)
        index = torch.arange(episodes.episodes, device=episodes.states.device)
        start = model.encode(episodes.observations(index, torch.zeros_like(index)).float())
        pairs: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        for horizon in sorted(set(int(h) for h in horizons)):
            pairs[horizon] = None
            if horizon > episodes.length:
                log.warning("oracle: horizon %d exceeds the held-out episodes' %d model steps; "
                            "raise data.episode_len to measure it", horizon, episodes.length)
                continue
            predicted = model.task_state(model.rollout(start, episodes.actions[:, :horizon])[:, -1])
            if predicted is None:
                continue
            truth = val.states[:, horizon].astype(np.float64)
            moved = ~np.asarray(success(val.states[:, 0].astype(np.float64), truth), dtype=bool)
            if moved.any():
                pairs[horizon] = predicted.cpu().numpy().astype(np.float64)[moved], truth[moved]
        return pairs
    finally:
        model.train(was_training)


def oracle_success(model: WorldModel, val: TrajectoryDataset, success: SuccessRule,
                   horizons: Iterable[int]) -> dict[str, float]:
    """{val/oracle_success@H: fraction} for each horizon H (model steps) the held-out episodes
    are long enough for; NaN for a model with no readout of the task state, and for an H longer
    than the episodes or with no usable trajectory."""
    return {oracle_key(horizon): float("nan") if pair is None else
            float(np.asarray(success(*pair), dtype=bool).mean())
            for horizon, pair in oracle_predictions(model, val, success, horizons).items()}


@torch.no_grad()
def fit_state_readout(model: WorldModel, train: TrajectoryDataset, val: TrajectoryDataset,
                      seed: int = 0) -> dict[str, float]:
    """Fit a latent model's `state_readout` on a fixed sample of training observations and
    return its held-out RMSE (task units, every state entry); state models need none ({})."""
    if not model.latent:
        return {}
    was_training = model.training
    model.eval()
    try:
        latents, states = [], []
        for data, size in ((train, READOUT_SAMPLE), (val, READOUT_SAMPLE)):
            episodes = Episodes(model, data)
            total = episodes.episodes * (episodes.length + 1)
            generator = torch.Generator().manual_seed(seed)
            flat = torch.randperm(total, generator=generator)[:size].to(episodes.states.device)
            episode, time = flat // (episodes.length + 1), flat % (episodes.length + 1)
            obs = episodes.observations(episode, time)
            latents.append(torch.cat([model.encode(chunk) for chunk in obs.split(256)]))
            states.append(episodes.states[episode, time].float())
        model.state_readout = fit_linear_readout(latents[0], states[0]).cpu()
        error = apply_linear_readout(model.state_readout, latents[1]) - states[1]
        return {"val/state_readout_rmse": float(error.pow(2).mean().sqrt())}
    finally:
        model.train(was_training)
