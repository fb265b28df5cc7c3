"""What the world-model accuracy levers claim: the rollout loss is the weighted sum of a
hand-unrolled model's per-step errors, Push-T's block frame round-trips states exactly and turns
with the block, an ensemble's mean and disagreement are what they say, best-weight selection and
early stopping keep what they promise, and training on a tiny exact system drives the oracle
success to 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from grasp.envs.pusht import PushTTask
from grasp.envs.pusht_frame import BlockFrame
from grasp.eval.oracle import oracle_success
from grasp.models.ensemble import EnsembleWorldModel
from grasp.models.losses import rollout_loss, step_weights
from grasp.models.mlp import MLPWorldModel
from grasp.models.pixel import PixelWorldModel
from grasp.planners import build
from grasp.train.dataset import TrajectoryDataset
from grasp.train.trainer import Episodes, selection_error, train_world_model


def _windows(model, generator, batch=16, steps=3):
    obs = torch.randn(batch, steps + 1, model.state_dim, generator=generator)
    actions = torch.rand(batch, steps, model.action_dim, generator=generator) * 2 - 1
    return obs, actions


def test_step_weights_are_a_discounted_distribution():
    weights = step_weights(4, 0.5)
    assert torch.allclose(weights, torch.tensor([8.0, 4.0, 2.0, 1.0]) / 15)
    assert torch.allclose(step_weights(3, 1.0), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="rollout_discount"):
        step_weights(3, 0.0)


@pytest.mark.parametrize("frame", [None, BlockFrame()], ids=["plain", "block_frame"])
def test_mlp_rollout_loss_is_the_weighted_sum_of_hand_unrolled_step_losses(frame):
    torch.manual_seed(0)
    model = MLPWorldModel(11, 10, hidden_dim=32, depth=2, pred_steps=3, rollout_discount=0.5, frame=frame)
    generator = torch.Generator().manual_seed(1)
    obs, actions = _windows(model, generator)
    obs[..., 4:6] = torch.nn.functional.normalize(obs[..., 4:6], dim=-1)  # (cos, sin) of an angle
    model.prepare(obs, actions)
    loss, parts = model.training_loss(obs, actions)
    state, expected = model.encode(obs[:, 0]), 0.0
    for k, weight in enumerate(torch.tensor([4.0, 2.0, 1.0]) / 7):
        state = model.advance(state, actions[:, k])  # by hand, one step at a time
        expected = expected + weight * torch.mean(((state - model.encode(obs[:, k + 1])) / model.delta_std) ** 2)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert "rollout3_step_mse" in parts
    loss.backward()  # the gradient flows through every step of the rollout
    assert model.net[0].weight.grad.abs().sum() > 0


def test_state_loss_weights_weigh_each_entrys_error_and_default_to_one():
    torch.manual_seed(0)
    weights = [1.0, 1.0, 4.0, 0.0]  # scaled to mean 1: [2/3, 2/3, 8/3, 0]
    plain, weighted = (MLPWorldModel(4, 2, hidden_dim=16, depth=1, pred_steps=2, state_loss_weights=w)
                       for w in (None, weights))
    weighted.load_state_dict(plain.state_dict())
    obs, actions = _windows(plain, torch.Generator().manual_seed(3), steps=2)
    for model in (plain, weighted):
        model.prepare(obs, actions)
    losses = [model.training_loss(obs, actions)[0] for model in (plain, weighted)]
    scale = torch.tensor(weights) * 4 / sum(weights)
    state, expected, unweighted = plain.encode(obs[:, 0]), 0.0, 0.0
    for k in range(2):  # by hand: every entry's squared standardised error, times its weight
        state = plain.advance(state, actions[:, k])
        error = ((state - plain.encode(obs[:, k + 1])) / plain.delta_std) ** 2
        expected, unweighted = expected + torch.mean(error * scale) / 2, unweighted + torch.mean(error) / 2
    assert torch.allclose(losses[1], expected, rtol=1e-5) and torch.allclose(losses[0], unweighted, rtol=1e-5)
    assert not torch.allclose(losses[0], losses[1])
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [0.0] * 4):
        with pytest.raises(ValueError, match="state_loss_weights"):
            MLPWorldModel(4, 2, state_loss_weights=bad)


def test_one_step_loss_is_the_standardised_residual_error():
    torch.manual_seed(0)
    model = MLPWorldModel(4, 2, hidden_dim=16, depth=1)
    obs, actions = _windows(model, torch.Generator().manual_seed(2), steps=1)
    model.prepare(obs, actions)
    state, nxt = model.encode(obs[:, 0]), model.encode(obs[:, 1])
    target = (nxt - state - model.delta_mean) / model.delta_std
    expected = torch.mean((model.predict_delta(state, actions[:, 0]) - target) ** 2)
    assert torch.allclose(model.training_loss(obs, actions)[0], expected, rtol=1e-5)


def test_pixel_latent_loss_is_the_sum_of_hand_unrolled_step_losses():
    torch.manual_seed(0)
    model = PixelWorldModel(4, 2, latent_dim=8, frame_size=16, history=1, channels=4, hidden_dim=16, depth=1,
                            pred_steps=3, rollout_discount=0.8, recon_weight=0.0)
    model.eval()  # the latent BatchNorm uses fixed statistics, so encoding one step at a time matches
    obs = torch.randint(0, 256, (6, 4, 3, 16, 16)).float()
    actions = torch.rand(6, 3, 2) * 2 - 1
    _, parts = model.training_loss(obs, actions)
    latents, expected = model.encode(obs), 0.0
    state = latents[:, 0]
    for k, weight in enumerate(torch.tensor([1.0, 0.8, 0.64]) / 2.44):
        state = model.step(state, actions[:, k])
        expected = expected + weight * torch.mean((state - latents[:, k + 1]) ** 2)
    assert torch.allclose(parts["latent_pred_mse"], expected, rtol=1e-5)


def _pusht_states(n: int, seed: int) -> torch.Tensor:
    """Real Push-T states (sampled poses) with random velocities, float64."""
    task, rng = PushTTask(), np.random.default_rng(seed)
    states = np.stack([task.sample_state(rng) for _ in range(n)])
    task.close()
    states[:, 6:] = rng.normal(size=(n, 5))
    return torch.as_tensor(states, dtype=torch.float64)


def _turned(states: torch.Tensor, angle: float) -> torch.Tensor:
    """The same scene turned by `angle` about the arena's centre."""
    c, s = math.cos(angle), math.sin(angle)
    turn = torch.tensor([[c, -s], [s, c]], dtype=states.dtype)
    out = states.clone()
    for i in (0, 2, 4, 6, 8):
        out[:, i : i + 2] = states[:, i : i + 2] @ turn.T
    return out


def test_block_frame_round_trips_states_and_turns_with_the_block():
    frame = BlockFrame()
    states, later = _pusht_states(64, 0), _pusht_states(64, 1)
    motion = frame.relative(states, later)
    assert motion.shape == (64, frame.motion_dim)
    assert torch.allclose(frame.apply(states, motion), later, atol=1e-12, rtol=0)
    # the frame turns with the scene: a turned scene has the same local pusher, velocities and motion
    turned, turned_later = _turned(states, 0.7), _turned(later, 0.7)
    assert torch.allclose(frame.features(turned)[:, :7], frame.features(states)[:, :7], atol=1e-12)
    assert torch.allclose(frame.relative(turned, turned_later), motion, atol=1e-12)
    commands = torch.randn(64, 10, dtype=torch.float64)
    assert torch.allclose(frame.local_action(turned, _turned_commands(commands, 0.7)),
                          frame.local_action(states, commands), atol=1e-12)
    # and it is not the identity: a block turned by 90 degrees sees a +x command as -y
    quarter = states[:1].clone()
    quarter[0, 4:6] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    local = frame.local_action(quarter, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(local, torch.tensor([[0.0, -1.0]], dtype=torch.float64), atol=1e-12)


def _turned_commands(commands: torch.Tensor, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    pairs = commands.reshape(len(commands), -1, 2)
    return torch.stack([c * pairs[..., 0] - s * pairs[..., 1], s * pairs[..., 0] + c * pairs[..., 1]], -1).reshape(
        commands.shape)


def test_a_frame_of_the_wrong_task_is_refused():
    with pytest.raises(ValueError, match="frame"):
        MLPWorldModel(4, 2, frame=BlockFrame())


def _ensemble(members=3, **kw) -> EnsembleWorldModel:
    torch.manual_seed(0)
    return EnsembleWorldModel(4, 2, members=members, hidden_dim=16, depth=1, **kw)


def test_ensemble_members_differ_and_step_is_their_mean_and_disagreement_their_std():
    model = _ensemble()
    state, action = torch.randn(5, 4), torch.rand(5, 2)
    each = torch.stack([m.step(state, action) for m in model.members])
    assert not torch.allclose(each[0], each[1])  # members start from their own weights
    assert torch.allclose(model.step(state, action), each.mean(0))
    assert torch.allclose(model.disagreement(state, action), each.std(0).mean(-1))
    for member in model.members[1:]:  # identical members agree everywhere
        member.load_state_dict(model.members[0].state_dict())
    assert torch.allclose(model.disagreement(state, action), torch.zeros(5), atol=1e-7)


def test_a_frozen_ensemble_freezes_and_folds_every_member_and_steps_the_same():
    model = _ensemble()
    state, action = torch.randn(5, 4), torch.rand(5, 2)
    plain = model.step(state, action)
    with model.frozen():
        assert not any(p.requires_grad for p in model.parameters())
        assert all(member._folded is not None for member in model.members)
        torch.testing.assert_close(model.step(state, action), plain.detach())
    assert all(p.requires_grad for p in model.parameters()) and all(m._folded is None for m in model.members)


def test_ensemble_trains_every_member_and_reports_disagreement(tmp_path):
    data = _linear_system(episodes=40, length=12, seed=0)
    model = _ensemble(members=2)
    cfg = OmegaConf.create({"steps": 60, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0, "eval_every": 30,
                            "rollout_len": 4, "seed": 0})
    before = [m.net[0].weight.detach().clone() for m in model.members]
    result = train_world_model(model, data, cfg, 0.2, progress=False)
    assert all(not torch.equal(b, m.net[0].weight) for b, m in zip(before, model.members))
    assert result["final"]["val/disagreement"] > 0


def test_disagreement_weight_keeps_plans_where_members_agree():
    model = _ensemble(members=4).eval()
    state0, goal = torch.zeros(8, 4), torch.full((8, 4), 0.5)
    penalised = build("cem", model, horizon=5, disagreement_weight=1.0)
    free = build("cem", model, horizon=5)
    with torch.no_grad():
        actions = torch.rand(8, 5, 2) * 2 - 1
        states = model.rollout(state0, actions)
        summed = model.disagreement(torch.cat([state0[:, None], states[:, :-1]], 1), actions).sum(-1)
        assert torch.allclose(penalised.rollout_cost(state0, actions, goal), free.rollout_cost(state0, actions, goal)
                              + summed)
    off = _plan_spread(model, state0, goal, 0.0)
    on = _plan_spread(model, state0, goal, 50.0)
    assert on < 0.7 * off


def _plan_spread(model, state0, goal, weight) -> float:
    """The members' disagreement summed along the plan CEM returns with this weight."""
    planner = build("cem", model, horizon=5, iterations=10, samples=256, disagreement_weight=weight)
    actions = planner.plan(state0, goal, generator=torch.Generator().manual_seed(0)).actions
    with torch.no_grad():
        states = model.rollout(state0, actions)
        return float(model.disagreement(torch.cat([state0[:, None], states[:, :-1]], 1), actions).sum())


def test_disagreement_weight_needs_an_ensemble():
    with pytest.raises(ValueError, match="disagreement_weight"):
        build("cem", MLPWorldModel(4, 2, hidden_dim=8, depth=1), horizon=5, disagreement_weight=1.0)


# ---- training: selection, early stopping, and the oracle on an exact system ---------------------
A = torch.tensor([[1.0, 0.0, 0.1, 0.0], [0.0, 1.0, 0.0, 0.1], [0.0, 0.0, 0.9, 0.0], [0.0, 0.0, 0.0, 0.9]])
B = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.1, 0.0], [0.0, 0.1]])


def _linear_system(episodes: int, length: int, seed: int) -> TrajectoryDataset:
    """A tiny exact system, s' = A s + B a (a damped point mass), with random actions."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.empty(episodes, length + 1, 4)
    states[:, 0] = torch.rand(episodes, 4, generator=generator) * 2 - 1
    actions = torch.rand(episodes, length, 2, generator=generator) * 2 - 1
    for t in range(length):
        states[:, t + 1] = states[:, t] @ A.T + actions[:, t] @ B.T
    return TrajectoryDataset(states.numpy(), actions.numpy(), {})


def _near(state: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.linalg.norm(state[..., :2] - goal[..., :2], axis=-1) < 0.02


def _train_cfg(**kw):
    return OmegaConf.create({"steps": 1500, "batch_size": 128, "lr": 3e-3, "weight_decay": 0.0, "eval_every": 250,
                             "rollout_len": 10, "seed": 0, **kw})


def test_training_on_an_exact_system_drives_the_oracle_success_to_one():
    data = _linear_system(episodes=200, length=12, seed=0)
    held_out = _linear_system(episodes=50, length=12, seed=1)
    torch.manual_seed(0)
    model = MLPWorldModel(4, 2, hidden_dim=64, depth=2, pred_steps=4)
    untrained = oracle_success(model.eval(), held_out, _near, [10])["val/oracle_success@10"]
    train_world_model(model, data, _train_cfg(), 0.1, progress=False)
    assert untrained < 0.5
    assert oracle_success(model, held_out, _near, [10])["val/oracle_success@10"] == 1.0


def test_select_best_ends_with_the_lowest_rollout_error_weights():
    data = _linear_system(episodes=60, length=12, seed=0)
    torch.manual_seed(0)
    model = MLPWorldModel(4, 2, hidden_dim=32, depth=1)
    result = train_world_model(model, data, _train_cfg(steps=600, eval_every=50, lr=3e-2, select="best"), 0.2,
                               progress=False)
    errors = [selection_error(m) for m in result["history"]]
    assert selection_error(result["final"]) == min(errors)
    assert result["final"]["train/selected_step"] == result["history"][int(np.argmin(errors))]["train/step"]
    _, val = data.split(0.2)
    again = model.eval().validation_metrics(Episodes(model, val), 10)  # the model holds the selected weights
    assert selection_error(again) == pytest.approx(min(errors), rel=1e-5)


def test_patience_stops_training_that_no_longer_improves():
    data = _linear_system(episodes=20, length=12, seed=0)
    torch.manual_seed(0)
    model = MLPWorldModel(4, 2, hidden_dim=8, depth=1)
    # lr 1e-12: the weights barely move, so after the first validation nothing improves
    result = train_world_model(model, data, _train_cfg(steps=1000, eval_every=10, lr=1e-12, patience=3), 0.2,
                               progress=False)
    assert [m["train/step"] for m in result["history"]][-1] < 1000
    assert len(result["history"]) <= 1 + 3 + 1


def test_substeps_chain_one_network_step_per_piece_of_the_action():
    torch.manual_seed(0)
    model = MLPWorldModel(4, 10, hidden_dim=16, depth=1, substeps=5)
    model.prepare(torch.randn(8, 3, 4), torch.rand(8, 2, 10))
    state, action = torch.randn(6, 4), torch.rand(6, 10) * 2 - 1
    expected = state
    for piece in action.split(2, dim=-1):  # each sub-step: a fifth of the model step's mean and spread of motion
        expected = expected + model.delta_mean / 5 + model.delta_std / 5 * model.predict_delta(expected, piece)
    assert torch.allclose(model.advance(state, action), expected, atol=1e-6)
    assert model.net[0].in_features == 4 + 2


def test_substeps_need_an_action_stacked_in_as_many_pieces(tiny_cfg):
    from grasp.errors import ConfigError
    from grasp.job import resolve

    with pytest.raises(ValueError, match="world_model.substeps"):
        MLPWorldModel(4, 10, substeps=3)
    # a held 2-D action would split in two 1-D halves: refused before any work
    with pytest.raises(ConfigError, match="world_model.substeps.*env.action_chunk"):
        resolve(tiny_cfg("world_model.substeps=2"))


def test_training_windows_longer_than_the_episodes_fail_before_collection(tiny_cfg):
    from grasp.errors import ConfigError
    from grasp.job import resolve

    with pytest.raises(ConfigError, match="world_model.pred_steps"):
        resolve(tiny_cfg("world_model.pred_steps=30"))
