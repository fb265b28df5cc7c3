"""train.ema: training keeps an exponential moving average of its weights, validates those and
ends with them; it is off (and leaves cache keys alone) at 0."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.optim.optimizer import register_optimizer_step_post_hook

from conftest import compose_config, resolved, tiny_training
from grasp.errors import ConfigError
from grasp.train.trainer import build_world_model, held_out_metrics, train_world_model

DECAY = 0.8


@pytest.fixture(scope="module")
def setting():
    return tiny_training(12, 12, steps=25, eval_every=5, batch_size=16, rollout_len=4, checkpoint_every=0)


def fresh_model(cfg):
    torch.manual_seed(7)
    return build_world_model(cfg.world_model, 4, 2)


def live_weights_after_each_step(cfg, data, train_cfg) -> list[list[torch.Tensor]]:
    """The parameters after every optimiser step of a run without averaging."""
    model, seen = fresh_model(cfg), []

    def record(optimizer, args, kwargs):
        seen.append([p.detach().clone() for p in model.parameters()])

    handle = register_optimizer_step_post_hook(record)
    try:
        train_world_model(model, data, OmegaConf.merge(train_cfg, {"ema": 0.0}), 0.2, progress=False)
    finally:
        handle.remove()
    return seen


def test_training_ends_with_the_moving_average_of_its_steps(setting):
    cfg, data, train_cfg = setting
    steps = live_weights_after_each_step(cfg, data, train_cfg)
    assert len(steps) == train_cfg.steps
    expected = steps[0]
    for weights in steps[1:]:
        expected = [DECAY * e + (1 - DECAY) * w for e, w in zip(expected, weights)]
    averaged = fresh_model(cfg)
    train_world_model(averaged, data, OmegaConf.merge(train_cfg, {"ema": DECAY}), 0.2, progress=False)
    for got, want in zip(averaged.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(a, b) for a, b in zip(steps[-1], expected)), "the average is not the last step"


def test_validation_measures_the_averaged_weights(setting):
    cfg, data, train_cfg = setting
    model = fresh_model(cfg)
    result = train_world_model(model, data, OmegaConf.merge(train_cfg, {"ema": DECAY}), 0.2, progress=False)
    again = held_out_metrics(model, data.split(0.2)[1], int(train_cfg.rollout_len))
    assert result["final"]["val/one_step_mse"] == pytest.approx(again["val/one_step_mse"], rel=1e-6)


def test_ema_off_keeps_cache_keys_and_a_bad_decay_is_refused():
    plain = resolved(compose_config())
    assert resolved(compose_config(["train.ema=0"])).model_key == plain.model_key
    assert resolved(compose_config(["train.ema=0.99"])).model_key != plain.model_key
    with pytest.raises(ConfigError, match="train.ema"):
        resolved(compose_config(["train.ema=1.0"]))
