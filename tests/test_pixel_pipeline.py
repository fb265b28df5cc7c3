"""Pixel world models through the real runner at tiny sizes: frame datasets, planning in the
latent from image goals with the encoder out of the planner's gradients, latent divergence,
pictures on disk and in W&B, and the same start/goal pairs as the state model."""

from __future__ import annotations

import hydra
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT, TINY, compose_config, run_cli
from grasp.eval.pictures import episode_pictures
from grasp.job import build_planner, evaluation_protocol, resolve
from grasp.eval.mpc import run_mpc
from grasp.train.trainer import build_world_model
from wandb_files import read_offline_run

pytestmark = pytest.mark.slow

PIXEL = ["world_model=pixel", "world_model.frame_size=16", "world_model.channels=4", "world_model.latent_dim=8",
         "world_model.hidden_dim=32", "world_model.pred_steps=2", "data.episodes=12", "data.episode_len=8",
         "train.rollout_len=4", "train.batch_size=16"]


@pytest.mark.parametrize("planner", ["grasp", "gd", "cem"])
def test_planning_from_images_never_reaches_the_encoder(planner, tmp_path):
    knobs = ["planner.iterations=5"] + (["planner.sync_every=5"] if planner == "grasp" else [])
    cfg = compose_config(TINY + PIXEL + [f"planner={planner}", f"paths.root_dir={tmp_path}", *knobs])
    task = hydra.utils.instantiate(cfg.env)
    model = build_world_model(cfg.world_model, task.state_dim, task.action_dim).eval()
    touched = []
    for name, parameter in list(model.encoder.named_parameters()) + list(model.decoder.named_parameters()):
        parameter.register_hook(lambda grad, name=name: touched.append(name))
    seen = []
    encode = model.encode
    model.encode = lambda obs: (seen.append(obs.requires_grad), encode(obs))[1]
    job = resolve(cfg, task=task)
    protocol = evaluation_protocol(job)
    try:
        outcomes = run_mpc([task, hydra.utils.instantiate(cfg.env)], build_planner(job, model),
                           protocol.starts, protocol.goals, max_steps=4, replan_every=2,
                           generator=torch.Generator().manual_seed(0), observer=model.observer())
    finally:
        task.close()
    assert not touched, f"planning sent gradients into {touched[:3]}"
    assert seen and not any(seen), "images given to the encoder never carry gradients"
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(o.steps == 4 for o in outcomes) and all(np.isfinite(o.divergence) for o in outcomes)
    assert outcomes[0].frames[0].shape == (3, 16, 16) and len(outcomes[0].predicted) == 4
    # every planner's first plan gets a strip: virtual states (GRASP) or predicted states (GD, CEM)
    assert outcomes[0].first_plan_info["snapshot_iteration"] == [0, 1, 2, 3, 4]
    images, videos = episode_pictures(model, outcomes[0], tmp_path, "episode0")
    assert images["pictures/episode0_plan_strip"].stat().st_size > 1000 and videos


def test_pixel_run_end_to_end_with_pictures_in_wandb(tmp_path):
    common = TINY + [f"paths.root_dir={tmp_path}", "planner=grasp", "planner.sync_every=5"]
    proc = run_cli(common + PIXEL + [f"hydra.run.dir={tmp_path}/pixel", "logger.wandb.mode=offline",
                                     "eval.pictures=1"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    pixel = pd.read_csv(tmp_path / "pixel" / "results.csv")
    assert len(pixel) == 2 and pixel["model_divergence"].notna().all()
    assert pixel["model_val_mse"].notna().all()
    # success in the model goes through the latent model's fitted state readout, its error beside it
    assert pixel["model_success"].isin([0.0, 1.0]).all() and pixel["model_final_distance"].notna().all()
    assert pixel["model_readout_rmse"].notna().all() and pixel["model_oracle_success"].between(0, 1).all()
    (dataset,) = (tmp_path / "outputs" / "cache" / "data" / "wall").glob("*.npz")
    with np.load(dataset) as data:
        assert data["frames"].shape == (12, 9, 3, 16, 16) and data["frames"].dtype == np.uint8

    pictures = tmp_path / "pixel" / "pictures"
    assert (pictures / "episode0_plan_strip.png").stat().st_size > 1000
    assert (pictures / "episode0_video.mp4").stat().st_size > 1000
    assert (pictures / "training_curves.png").exists() and not (pictures / "episode1_video.mp4").exists()
    run = read_offline_run(next((tmp_path / "pixel" / "wandb").glob("offline-run-*")))
    logged = {key.rsplit("/", 1)[0]: row[key] for row in run["history"] for key in row if key.endswith("/_type")}
    assert logged["pictures/episode0_plan_strip"] == "image-file"
    assert logged["pictures/episode0_video"] == "video-file"

    # the state model on the same cell plans the same start/goal pairs
    proc = run_cli(common + [f"hydra.run.dir={tmp_path}/state", "logger.wandb.mode=disabled"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = pd.read_csv(tmp_path / "state" / "results.csv")
    assert list(state["episode_seed"]) == list(pixel["episode_seed"])
    assert len(list((tmp_path / "outputs" / "cache" / "protocols" / "wall").glob("*.json"))) == 1
