"""The MLP world model trains on real Wall data, validates, and round-trips its checkpoint."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from conftest import compose_config
from grasp.envs.exploration import exploration_actions
from grasp.train.dataset import TrajectoryDataset, collect, load_or_collect
from grasp.train.trainer import build_world_model, held_out_metrics, load_checkpoint, save_checkpoint, train_world_model


@pytest.fixture(scope="module")
def wall_data():
    cfg = compose_config(["env=wall"])
    task = hydra.utils.instantiate(cfg.env)
    data = collect(task, episodes=60, episode_len=30, policy="colored", correlation=0.8, seed=0, progress=False)
    task.close()
    return cfg, data


def test_colored_policy_travels_farther_than_white_noise():
    rng = np.random.default_rng(0)
    colored = exploration_actions(rng, 2000, 2, "colored", 0.9)
    white = exploration_actions(rng, 2000, 2, "colored", 0.0)
    assert np.abs(colored).max() <= 1.0
    lag1 = lambda a: np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]  # noqa: E731
    assert lag1(colored) > 0.7 and abs(lag1(white)) < 0.1


def test_dataset_shapes_split_and_round_trip(wall_data, tmp_path):
    _, data = wall_data
    assert data.states.shape == (60, 31, 4) and data.actions.shape == (60, 30, 2)
    train, val = data.split(0.1)
    assert len(train.states) == 54 and len(val.states) == 6
    data.save(tmp_path / "d.npz")
    again = TrajectoryDataset.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(again.states, data.states)
    assert again.meta == data.meta


def test_same_seed_same_data(wall_data):
    cfg, data = wall_data
    task = hydra.utils.instantiate(cfg.env)
    again = collect(task, episodes=5, episode_len=30, policy="colored", correlation=0.8, seed=0, progress=False)
    np.testing.assert_array_equal(again.states, data.states[:5])


def test_cached_dataset_for_another_config_is_refused(wall_data, tmp_path):
    cfg, data = wall_data
    task = hydra.utils.instantiate(cfg.env)
    data.meta["config_hash"] = "aaaa"
    data.save(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="does not match this config"):
        load_or_collect(tmp_path / "d.npz", task, cfg.data, "bbbb", allow_collect=True, progress=False)
    with pytest.raises(FileNotFoundError, match="'collect' is not in `stages`"):
        load_or_collect(tmp_path / "missing.npz", task, cfg.data, "bbbb", allow_collect=False, progress=False)


def test_training_lowers_validation_error_and_checkpoint_round_trips(wall_data, tmp_path):
    cfg, data = wall_data
    cfg.world_model.hidden_dim, cfg.world_model.depth = 64, 2
    model = build_world_model(cfg.world_model, 4, 2)
    train_cfg = cfg.train.copy()
    train_cfg.steps, train_cfg.eval_every, train_cfg.batch_size, train_cfg.rollout_len = 400, 200, 128, 5
    _, val = data.split(0.1)
    train, _ = data.split(0.1)
    s, _, s_next = (torch.as_tensor(x) for x in train.transitions())
    model.fit_normalization(s, s_next)
    before = held_out_metrics(model, val, 5)
    result = train_world_model(model, data, train_cfg, 0.1, progress=False)
    after = result["final"]
    assert after["val/one_step_mse"] < 0.5 * before["val/one_step_mse"]
    assert after["val/rollout5_mse"] < before["val/rollout5_mse"]
    assert [h["train/step"] for h in result["history"]] == [200, 400]

    path = tmp_path / "wm.pt"
    save_checkpoint(path, model, cfg.world_model, {"env": "wall"})
    loaded, payload = load_checkpoint(path, torch.device("cpu"), expect_env="wall", expect_dims=(4, 2))
    x, a = torch.randn(7, 4), torch.rand(7, 2) * 2 - 1
    torch.testing.assert_close(loaded.step(x, a), model.step(x, a), rtol=0, atol=0)
    assert payload["model_config"]["hidden_dim"] == 64
    assert set(payload["normalization"]) == {"state_mean", "state_std", "delta_mean", "delta_std"}

    with pytest.raises(ValueError, match="trained on env 'wall'"):
        load_checkpoint(path, torch.device("cpu"), expect_env="pusht")
    with pytest.raises(ValueError, match=r"\(state_dim, action_dim\)"):
        load_checkpoint(path, torch.device("cpu"), expect_dims=(6, 2))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(path, torch.device("cpu"))


def test_model_steps_any_leading_dims():
    cfg = compose_config(["world_model.hidden_dim=16"])
    model = build_world_model(cfg.world_model, 4, 2)
    assert model.step(torch.zeros(3, 5, 4), torch.zeros(3, 5, 2)).shape == (3, 5, 4)
    assert model.rollout(torch.zeros(3, 4), torch.zeros(3, 7, 2)).shape == (3, 7, 4)


@pytest.mark.parametrize("shape", [(6,), (3, 5)])
def test_frozen_model_steps_its_folded_network_to_the_same_states_and_gradients(shape):
    """Planning holds the model `frozen`: its step then runs the folded network (the residual's
    std and mean inside the output layer), which must be the same function, gradients too."""
    cfg = compose_config(["world_model.hidden_dim=16", "world_model.state_margin=0.1"])
    model = build_world_model(cfg.world_model, 4, 2)
    states = torch.randn(200, 4) * torch.tensor([1.0, 3.0, 0.2, 5.0])
    model.fit_normalization(states, states + 0.3 * torch.randn(200, 4))
    state, action = 3 * torch.randn(*shape, 4), torch.randn(*shape, 2)

    def step_and_grad():
        a = action.clone().requires_grad_(True)
        nxt = model.step(state, a)
        (grad,) = torch.autograd.grad(nxt.square().sum(), [a])
        return nxt.detach(), grad

    plain = step_and_grad()
    assert model._folded is None
    with model.frozen():
        assert model._folded is not None and not any(p.requires_grad for p in model.parameters())
        with model.frozen():  # a planner inside a planner (GRASP's CEM sync) keeps the outer folding
            pass
        assert model._folded is not None
        folded = step_and_grad()
    assert model._folded is None and all(p.requires_grad for p in model.parameters())
    assert bool((plain[0] == model.state_high).any() | (plain[0] == model.state_low).any()), "some entries clamped"
    for got, want in zip(folded, plain):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # weights changed between two plans: the next folding sees them
        model.net[-1].bias.add_(1.0)
    with model.frozen():
        moved = model.step(state, action)
    torch.testing.assert_close(moved, model.step(state, action).detach())
    assert not torch.allclose(moved, plain[0])


@pytest.mark.parametrize("override", ["world_model.norm=layer", "world_model.substeps=2",
                                      "world_model.frame={_target_:grasp.envs.pusht_frame.BlockFrame}"])
def test_models_whose_step_is_more_than_one_network_step_keep_the_plain_network(override):
    state_dim = 11 if "frame" in override else 4
    model = build_world_model(compose_config(["world_model.hidden_dim=16", override]).world_model, state_dim, 2)
    with model.frozen():
        assert model._folded is None
        assert model.step(torch.zeros(3, state_dim), torch.zeros(3, 2)).shape == (3, state_dim)


@pytest.mark.parametrize("margin", [0.5, None])
def test_state_margin_holds_rollouts_inside_the_data_box(margin):
    model = build_world_model(compose_config([f"world_model.state_margin={'null' if margin is None else margin}",
                                              "world_model.hidden_dim=16"]).world_model, 4, 2)
    states = torch.rand(100, 4) * torch.tensor([2.0, 2.0, 0.5, 0.5])  # the data's box: [0,2]^2 x [0,.5]^2
    model.fit_normalization(states, states + 0.01 * torch.randn(100, 4))
    with torch.no_grad():
        model.net[-1].bias.fill_(100.0)  # a model that drifts: every step adds 100 residual stds (~1 unit)
        raw = model.decode(model.rollout(model.encode(states[:3]), torch.zeros(3, 40, 2)))
        high = model.decode(model.state_high)
    if margin is None:
        assert raw.max() > 20.0, "without a bound the drift compounds"
        return
    # the box widened by half its size on each side: about [-1, 3]^2 x [-.25, .75]^2
    torch.testing.assert_close(high, torch.tensor([3.0, 3.0, 0.75, 0.75]), atol=0.1, rtol=0)
    assert (raw <= high + 1e-5).all()
    torch.testing.assert_close(raw[:, -1], high.expand(3, 4))  # pinned at the bound


def test_state_margin_must_be_null_or_non_negative():
    from grasp.errors import ConfigError
    from grasp.config import instantiate_checked

    with pytest.raises(ConfigError, match="world_model.state_margin=-1: allowed null"):
        instantiate_checked(compose_config(["world_model.state_margin=-1"]).world_model, "world_model",
                            state_dim=4, action_dim=2)
