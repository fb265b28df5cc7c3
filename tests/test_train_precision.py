"""train.precision: bf16 runs the training loss's matmuls in bfloat16 while the weights, the
optimiser and validation stay fp32; fp32 (the default) leaves cache keys alone."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config, resolved, tiny_training
from grasp.errors import ConfigError
from grasp.train.trainer import build_world_model, train_world_model


@pytest.fixture(scope="module")
def setting():
    return tiny_training(12, 12, steps=40, eval_every=20, batch_size=16, rollout_len=4, checkpoint_every=0)


def trained(setting, precision: str):
    """The model after training in `precision`, and the dtypes its first layer's output had
    while training (grad on) and while validating (grad off)."""
    cfg, data, train_cfg = setting
    torch.manual_seed(7)
    model = build_world_model(cfg.world_model, 4, 2)
    seen = {"train": set(), "validate": set()}
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(
        lambda module, args, out: seen["train" if torch.is_grad_enabled() else "validate"].add(out.dtype))
    result = train_world_model(model, data, OmegaConf.merge(train_cfg, {"precision": precision}), 0.2, progress=False)
    return model, seen, result


def test_bf16_trains_in_bf16_and_keeps_fp32_weights_and_validation(setting):
    model, seen, result = trained(setting, "bf16")
    assert seen == {"train": {torch.bfloat16}, "validate": {torch.float32}}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    history = result["history"]
    assert history[-1]["val/one_step_mse"] < history[0]["val/one_step_mse"], "bf16 training did not learn"


def test_fp32_is_plain_and_differs_from_bf16(setting):
    fp32, seen, _ = trained(setting, "fp32")
    assert seen == {"train": {torch.float32}, "validate": {torch.float32}}
    bf16 = trained(setting, "bf16")[0]
    assert any(not torch.equal(a, b) for a, b in zip(fp32.parameters(), bf16.parameters()))


def test_fp32_keeps_cache_keys_and_a_bad_precision_is_refused():
    plain = resolved(compose_config())
    assert resolved(compose_config(["train.precision=fp32"])).model_key == plain.model_key
    assert resolved(compose_config(["train.precision=bf16"])).model_key != plain.model_key
    with pytest.raises(ConfigError, match="train.precision"):
        resolved(compose_config(["train.precision=fp16"]))
