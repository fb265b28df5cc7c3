"""The pixel world model: shapes, learning on real Wall frames, the planner's gradient path, knobs."""

from __future__ import annotations

import math

import hydra
import numpy as np
import pytest
import torch

from conftest import compose_config
from grasp.models.pixel import PixelWorldModel

TINY = dict(latent_dim=8, channels=8, hidden_dim=32, depth=2)


def frames(batch: tuple[int, ...], history: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (*batch, 3 * history, size, size), dtype=torch.uint8)


@pytest.fixture
def one_thread():
    """Training runs on one thread: on a shared machine several threads fight for the cores and
    a step costs about ten times as much."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def wall_frames():
    """24 random-action episodes of 7 steps of the real Wall task as 32x32 frame stacks
    (history 2, the first frame repeated before the start): obs (E, 8, 6, 32, 32), actions (E, 7, 2).
    Frames cost ~40 ms each on a CPU, so the set is kept small (~8 s)."""
    task = hydra.utils.instantiate(compose_config(["env=wall"]).env)
    rng = np.random.default_rng(0)
    episodes, length = 24, 7
    actions = rng.uniform(-1.0, 1.0, (episodes, length, 2))
    images = np.empty((episodes, length + 1, 32, 32, 3), dtype=np.uint8)
    try:
        for e in range(episodes):
            task.reset(task.sample_state(rng))
            images[e, 0] = task.render(32)
            for t in range(length):
                task.step(actions[e, t])
                images[e, t + 1] = task.render(32)
    finally:
        task.close()
    current = torch.as_tensor(images).permute(0, 1, 4, 2, 3)  # (E, L+1, 3, S, S)
    previous = torch.cat([current[:, :1], current[:, :-1]], dim=1)
    return torch.cat([previous, current], dim=2), torch.as_tensor(actions, dtype=torch.float32)


class StackedEpisodes:
    """Held-out episodes whose observations are given as ready frame stacks (N, L+1, C, S, S):
    what `validation_metrics` reads of the trainer's Episodes."""

    def __init__(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        self.obs, self.actions = obs, actions
        self.states = torch.zeros(*obs.shape[:2], 4)
        self.episodes, self.length = actions.shape[:2]

    def observations(self, episode: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return self.obs[episode, time]


def windows(obs: torch.Tensor, actions: torch.Tensor, episode: torch.Tensor, start: torch.Tensor, k: int):
    time = start[:, None] + torch.arange(k + 1)
    return obs[episode[:, None], time], actions[episode[:, None], time[:, :-1]]


# ---- shapes --------------------------------------------------------------------------------
def test_shapes_and_any_leading_dims():
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, **TINY)
    assert (model.latent, model.frame_size, model.state_dim, model.task_state_dim, model.action_dim) == (True, 64, 8, 4, 2)
    z = model.encode(frames((5,)))
    assert z.shape == (5, 8)
    assert model.encode(frames((3, 4))).shape == (3, 4, 8)
    assert model.encode(frames(())).shape == (8,)  # one unbatched observation
    assert model.encode(frames((3, 4)).float()).shape == (3, 4, 8)  # floats in [0, 255] too
    assert model.step(z, torch.zeros(5, 2)).shape == (5, 8)
    assert model.step(torch.zeros(3, 5, 8), torch.zeros(3, 5, 2)).shape == (3, 5, 8)
    assert model.rollout(z, torch.zeros(5, 7, 2)).shape == (5, 7, 8)
    image = model.decode(z)
    assert image.shape == (5, 3, 64, 64) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert model.decode(torch.randn(2, 3, 8)).shape == (2, 3, 3, 64, 64)
    with pytest.raises(ValueError, match="world_model.history=2"):
        model.encode(frames((2,), history=1))

    small = PixelWorldModel(4, 2, frame_size=32, history=3, **TINY)
    assert small.encode(frames((2,), history=3, size=32)).shape == (2, 8)
    assert small.decode(torch.zeros(2, 8)).shape == (2, 3, 32, 32)


def test_training_loss_and_validation_metrics_report_their_parts():
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, pred_steps=2, recon_weight=0.5, **TINY)
    obs, actions = frames((6, 3)), torch.rand(6, 2, 2) * 2 - 1
    loss, parts = model.training_loss(obs, actions)
    assert set(parts) == {"loss", "latent_pred_mse", "recon_mse"}
    # detached 0-d tensors: reading them syncs the device, so the trainer does it only when logging
    assert all(torch.is_tensor(v) and v.ndim == 0 and not v.requires_grad for v in parts.values())
    assert parts["loss"].item() == pytest.approx((parts["latent_pred_mse"] + 0.5 * parts["recon_mse"]).item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["loss"].item())
    metrics = model.validation_metrics(StackedEpisodes(frames((4, 6)), torch.zeros(4, 5, 2)), 5)
    assert set(metrics) == {"val/one_step_mse", "val/rollout5_mse", "val/recon_mse"}
    assert model.training, "validation_metrics restores the training mode"


def test_training_loss_stops_gradients_at_the_targets_only():
    """loss = mean_k MSE(rollout_k from z_0, sg(z_k)) + w * MSE(decode(z_t), frame_t): the encoder
    learns from the targets' side only through the reconstruction."""
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, frame_size=32, pred_steps=2, recon_weight=0.5, **TINY)
    obs, actions = frames((5, 3), size=32), torch.rand(5, 2, 2) * 2 - 1

    def encoder_grads(loss: torch.Tensor) -> list[torch.Tensor]:
        return torch.autograd.grad(loss, list(model.encoder.parameters()), retain_graph=True)

    loss, _ = model.training_loss(obs, actions)
    z = model.encode(obs)
    recon = torch.mean((model.decode(z) - obs[:, :, -3:].float() / 255) ** 2)
    predicted = model.rollout(z[:, 0], actions)
    reference = sum(torch.mean((predicted[:, k] - z[:, k + 1].detach()) ** 2) for k in range(2)) / 2 + 0.5 * recon
    torch.testing.assert_close(loss, reference)
    for got, want in zip(encoder_grads(loss), encoder_grads(reference)):
        torch.testing.assert_close(got, want)
    undetached = torch.mean((model.rollout(z[:, 0], actions) - z[:, 1:]) ** 2) + 0.5 * recon
    assert not all(torch.allclose(g, w) for g, w in zip(encoder_grads(loss), encoder_grads(undetached)))


# ---- learning ------------------------------------------------------------------------------
def test_training_on_wall_frames_lowers_held_out_loss(wall_frames, one_thread):
    obs, actions = wall_frames
    torch.manual_seed(0)
    k = 2
    model = PixelWorldModel(4, 2, frame_size=32, history=2, pred_steps=k, **TINY)
    train_episodes, length = 20, actions.shape[1]
    starts = torch.arange(length - k + 1)
    held_out = windows(obs, actions, torch.arange(train_episodes, len(obs)).repeat_interleave(len(starts)),
                       starts.repeat(len(obs) - train_episodes), k)

    def held_out_loss() -> dict[str, float]:
        """The training loss's parts on held-out windows in eval mode, the latent one scaled by
        the latents' spread (raw latents before training and normalised ones after differ in
        scale by ~1e3), and the model's own validation metrics on the held-out episodes."""
        model.eval()
        with torch.no_grad():
            _, parts = model.training_loss(*held_out)
            spread = model.encode(held_out[0]).var(dim=(0, 1)).mean().item()
        model.train()
        return {"relative_pred_mse": parts["latent_pred_mse"].item() / spread, **{k: v.item() for k, v in parts.items()},
                **model.validation_metrics(StackedEpisodes(obs[train_episodes:], actions[train_episodes:]),
                                            actions.shape[1])}

    before = held_out_loss()
    # Adam with the trainer's cosine decay: the BatchNorm's running statistics (an average over
    # the last ~10 batches) catch up with the encoder once it stops moving
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 200
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        episode = torch.randint(0, train_episodes, (16,), generator=generator)
        start = torch.randint(0, length - k + 1, (16,), generator=generator)
        loss, _ = model.training_loss(*windows(obs, actions, episode, start, k))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    after = held_out_loss()
    assert after["recon_mse"] < 0.5 * before["recon_mse"], (before, after)
    assert after["val/recon_mse"] < 0.5 * before["val/recon_mse"], (before, after)
    # an untrained step's residual dwarfs the raw latents' spread; a trained one predicts better
    # than the mean latent would (relative error 1)
    assert after["relative_pred_mse"] < min(0.6, 0.01 * before["relative_pred_mse"]), (before, after)
    # eval-mode latents are normalised by the training data's statistics
    model.eval()
    with torch.no_grad():
        z = model.encode(obs[:train_episodes]).flatten(0, 1)
    assert z.mean(0).abs().max() < 0.3 and ((z.var(0) > 0.7) & (z.var(0) < 1.4)).all(), (z.mean(0), z.var(0))


# ---- the planner's gradient path -----------------------------------------------------------
def test_planning_through_step_leaves_the_encoder_out():
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, **TINY).eval()
    with torch.no_grad():
        z0, goal = model.encode(frames((3,))), model.encode(frames((3,)))
    assert not z0.requires_grad and not goal.requires_grad
    actions = (torch.rand(3, 5, 2) * 2 - 1).requires_grad_()
    states = model.rollout(z0.requires_grad_(), actions)
    torch.sum((states[:, -1] - goal) ** 2).backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    encoder = [*model.encoder.parameters(), *model.latent_norm.parameters()]
    assert encoder and all(p.grad is None for p in encoder)
    assert all(p.grad is None for p in [*model.decoder_in.parameters(), *model.decoder.parameters()])
    assert all(p.grad is not None for p in model.net.parameters())


def test_encode_is_fixed_per_observation_in_eval_mode():
    """Eval-mode latents use the running (data) statistics, not the batch's: planning one
    observation gives the latent it has in any batch."""
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, **TINY)
    model.encode(frames((16,)))  # one training-mode batch moves the running statistics
    model.eval()
    batch = frames((6,))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(batch[:1]), model.encode(batch)[:1])
        torch.testing.assert_close(model.encode(batch[2:5]), model.encode(batch)[2:5])


# ---- knobs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [
    ("latent_dim", 0), ("frame_size", 48), ("frame_size", 8), ("history", 0), ("channels", 0), ("depth", 0),
    ("hidden_dim", 0), ("activation", "gelu"), ("recon_weight", -1.0), ("recon_weight", float("nan")),
    ("pred_steps", 0),
])
def test_bad_knobs_name_their_key(key, value):
    with pytest.raises(ValueError, match=rf"world_model\.{key}=.*allowed"):
        PixelWorldModel(4, 2, **{key: value})


def test_config_builds_the_model():
    cfg = compose_config(["world_model=pixel", "world_model.latent_dim=8", "world_model.channels=4"])
    model = hydra.utils.instantiate(cfg.world_model, state_dim=4, action_dim=2)
    assert isinstance(model, PixelWorldModel) and model.state_dim == 8 and model.pred_steps == 3


# ---- determinism ---------------------------------------------------------------------------
def test_same_seed_same_loss():
    obs, actions = frames((4, 4), size=32), torch.rand(4, 3, 2) * 2 - 1

    def loss(seed: int) -> float:
        torch.manual_seed(seed)
        return PixelWorldModel(4, 2, frame_size=32, **TINY).training_loss(obs, actions)[0].item()

    assert loss(0) == loss(0)
    assert loss(0) != loss(1)
