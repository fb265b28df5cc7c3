"""Interrupted world-model training resumes where it stopped: in process (exact same weights as
an uninterrupted run) and as a user sees it (a killed `python -m grasp.run` rerun with the same
command continues at the saved step, in the same W&B run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO_ROOT, TINY, tiny_training
from grasp.train.trainer import build_world_model, read_resume_state, train_world_model
from wandb_files import read_offline_run


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def setting():
    return tiny_training(20, 20, steps=60, eval_every=10, batch_size=32, rollout_len=5, checkpoint_every=20)


def fresh_model(cfg):
    torch.manual_seed(123)  # the same initial weights for every run of this test
    return build_world_model(cfg.world_model, 4, 2)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(setting, tmp_path, ema):
    cfg, data, train_cfg = setting
    train_cfg = OmegaConf.merge(train_cfg, {"ema": ema})
    straight = fresh_model(cfg)
    reference = train_world_model(straight, data, train_cfg, 0.1, progress=False)

    state_file = tmp_path / "wm.resume.pt"

    def stop_at_50(metrics):
        if metrics["train/step"] == 50:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_world_model(fresh_model(cfg), data, train_cfg, 0.1, progress=False, log_fn=stop_at_50,
                          resume_path=state_file, resume_meta={"wandb_run_id": "abc"})
    saved = read_resume_state(state_file)
    assert saved["step"] == 40 and saved["wandb_run_id"] == "abc"  # the last multiple of checkpoint_every
    assert saved["optimizer"]["state"], "the optimiser's moments are saved"
    assert ("ema" in saved) == (ema > 0), "the weight average travels with the training state"
    assert [h["train/step"] for h in saved["history"]] == [10, 20, 30, 40]

    seen = []
    resumed = fresh_model(cfg)
    result = train_world_model(resumed, data, train_cfg, 0.1, progress=False, log_fn=seen.append,
                               resume_path=state_file)
    assert [m["train/step"] for m in seen] == [50, 60], "resumed at step 41, not from scratch"
    assert [h["train/step"] for h in result["history"]] == [10, 20, 30, 40, 50, 60]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert result["final"] == reference["final"]


def test_an_unreadable_resume_state_is_ignored(setting, tmp_path):
    cfg, data, train_cfg = setting
    state_file = tmp_path / "wm.resume.pt"
    state_file.write_bytes(b"not a torch file")
    assert read_resume_state(state_file) is None
    result = train_world_model(fresh_model(cfg), data, train_cfg, 0.1, progress=False, resume_path=state_file)
    assert [h["train/step"] for h in result["history"]][0] == 10


@pytest.mark.slow
def test_a_killed_run_resumes_at_its_saved_step_in_the_same_wandb_run(tmp_path):
    args = [a for a in TINY if not a.startswith(("train.steps", "train.eval_every", "logger.wandb.mode"))]
    args += [f"paths.root_dir={tmp_path}", "planner=cem", "train.steps=3000", "train.eval_every=250",
             "train.checkpoint_every=250", "logger.wandb.mode=offline", "stages=[collect,train]"]
    env = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "grasp.run", *args]
    first = subprocess.Popen(command + [f"hydra.run.dir={tmp_path}/run1"], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = tmp_path / "outputs" / "cache" / "checkpoints" / "wall"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            saved = [read_resume_state(p) for p in checkpoints.glob("*.resume.pt")]
            if saved and saved[0] is not None and saved[0]["step"] >= 500:
                break
            assert first.poll() is None, "training ended before it could be interrupted"
            time.sleep(0.5)
        else:
            pytest.fail("no resume state appeared")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # as a cluster's time limit would
        first.wait()
    (state_file,) = checkpoints.glob("*.resume.pt")
    step, run_id = (read_resume_state(state_file)[key] for key in ("step", "wandb_run_id"))
    (first_run,) = (tmp_path / "run1" / "wandb").glob("offline-run-*")
    assert first_run.name.endswith(f"-{run_id}"), "the resume state holds the killed job's W&B run id"
    assert list(checkpoints.glob("*.pt")) == [state_file], "no finished checkpoint yet"

    second = subprocess.run(command + [f"hydra.run.dir={tmp_path}/run2"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from step {step} of 3000" in second.stdout + second.stderr
    assert len(list(checkpoints.glob("*.pt"))) == 1 and not state_file.exists()

    # the rerun continues the killed job's W&B run (its own files hold the same run id)
    rerun = read_offline_run(next((tmp_path / "run2" / "wandb").glob("offline-run-*")))
    assert rerun["run"].run_id == run_id
    steps = [row["train/step"] for row in rerun["history"] if "train/step" in row]
    assert steps[0] == step + 250 and steps[-1] == 3000

    # the same command never interrupted, in a root of its own, trains the very same weights
    alone = tmp_path / "alone"
    straight = subprocess.run([*command, f"paths.root_dir={alone}", "logger.wandb.mode=disabled",
                               f"hydra.run.dir={alone}/run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    (resumed_file,) = checkpoints.glob("*.pt")
    (straight_file,) = (alone / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt")
    assert resumed_file.name == straight_file.name, "same config, same cache key"
    resumed, uninterrupted = (torch.load(p, weights_only=False) for p in (resumed_file, straight_file))
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert not list(tmp_path.rglob(".*.tmp")), "no half-written file is left behind"
