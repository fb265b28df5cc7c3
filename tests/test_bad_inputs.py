"""Bad input, one clear error: a table of bad configs and bad files, each run through the real
runner (grasp.runner.run on a composed config, as `python -m grasp.run` does). Every case must fail
before any collection, training or planning, with one error of a user-facing type whose message
names the key or the file and what is allowed or expected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException, HydraException

from conftest import TINY, compose_config
from grasp import runner
from grasp.errors import ConfigError
from grasp.eval.journal import JOURNAL_NAME
from grasp.eval.protocol import Protocol

#: what a user-facing error may be: ours (ConfigError is a ValueError), Hydra's composition errors
#: (unknown override keys and options), a missing file
CLEAR = (ValueError, HydraException, FileNotFoundError)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny wall model, its dataset and its protocol, made once by the real runner."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_config(TINY + [f"paths.root_dir={root}", f"paths.output_dir={root}/run"])
    runner.run(cfg, root / "run")
    checkpoint = next((root / "outputs" / "cache" / "checkpoints" / "wall").glob("*.pt"))
    dataset = next((root / "outputs" / "cache" / "data" / "wall").glob("*.npz"))
    protocol = next((root / "outputs" / "cache" / "protocols" / "wall").glob("*.json"))
    return {"root": root, "checkpoint": checkpoint, "dataset": dataset, "protocol": protocol}


# ---- how each file case breaks its file: (trained, tmp_path) -> extra overrides ---------------------
def _checkpoint_copy(trained, tmp_path, edit: Callable[[dict], None]) -> list[str]:
    payload = torch.load(trained["checkpoint"], weights_only=False)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return [f"checkpoint={path}"]


def truncated_checkpoint(trained, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(trained["checkpoint"].read_bytes()[:500])
    return [f"checkpoint={path}"]


def other_env_checkpoint(trained, tmp_path):
    return [f"checkpoint={trained['checkpoint']}", "env=point_mass"]


def wrong_version_checkpoint(trained, tmp_path):
    return _checkpoint_copy(trained, tmp_path, lambda p: p.update(version=99))


def nan_checkpoint(trained, tmp_path):
    def poison(payload):
        name = next(k for k, v in payload["state_dict"].items() if k.endswith("weight"))
        payload["state_dict"][name][0, 0] = float("nan")

    return _checkpoint_copy(trained, tmp_path, poison)


def mismatched_weights_checkpoint(trained, tmp_path):
    return _checkpoint_copy(trained, tmp_path, lambda p: p["model_config"].update(hidden_dim=48))


def _cached_dataset(trained, tmp_path, write: Callable[[Path, Path], None]) -> list[str]:
    """A copy of the run's cache with the dataset file replaced (a new root, so nothing is shared)."""
    root = tmp_path / "root"
    shutil.copytree(trained["root"] / "outputs" / "cache" / "data", root / "outputs" / "cache" / "data")
    target = root / "outputs" / "cache" / "data" / "wall" / trained["dataset"].name
    write(trained["dataset"], target)
    return [f"paths.root_dir={root}"]


def truncated_dataset(trained, tmp_path):
    return _cached_dataset(trained, tmp_path, lambda good, bad: bad.write_bytes(good.read_bytes()[:300]))


def inconsistent_dataset(trained, tmp_path):
    def rewrite(good, bad):
        with np.load(good) as data:
            arrays = dict(data)
        arrays["actions"] = arrays["actions"][:, :-3]  # 3 actions short of the states
        np.savez_compressed(bad, **arrays)

    return _cached_dataset(trained, tmp_path, rewrite)


def dataset_of_another_version(trained, tmp_path):
    def rewrite(good, bad):
        with np.load(good) as data:
            arrays = dict(data)
        arrays["meta"] = json.dumps({**json.loads(str(arrays["meta"])), "version": 0, "state_dim": 3})
        np.savez_compressed(bad, **arrays)

    return _cached_dataset(trained, tmp_path, rewrite)


def _protocol_copy(trained, tmp_path, edit: Callable[[dict], None] | None = None, text: str | None = None):
    path = tmp_path / "pairs.json"
    if text is None:
        record = json.loads(trained["protocol"].read_text())
        edit(record)
        text = json.dumps(record)
    path.write_text(text)
    return [f"eval.protocol={path}"]


def truncated_protocol(trained, tmp_path):
    return _protocol_copy(trained, tmp_path, text=trained["protocol"].read_text()[:200])


def other_env_protocol(trained, tmp_path):
    return _protocol_copy(trained, tmp_path, lambda r: r.update(env="pusht"))


def short_protocol(trained, tmp_path):
    def one_pair(record):
        for key in ("episode_seeds", "starts", "goals"):
            record[key] = record[key][:1]

    return _protocol_copy(trained, tmp_path, one_pair)


def protocol_of_other_dims(trained, tmp_path):
    def three_dims(record):
        record.update(state_dim=3, starts=[s[:3] for s in record["starts"]], goals=[g[:3] for g in record["goals"]])

    return _protocol_copy(trained, tmp_path, three_dims)


def wrong_version_protocol(trained, tmp_path):
    return _protocol_copy(trained, tmp_path, lambda r: r.update(version=7))


def _journal(tmp_path, text: str) -> list[str]:
    run = tmp_path / "resumed"
    run.mkdir()
    (run / JOURNAL_NAME).write_text(text)
    return ["resume=true", f"paths.output_dir={run}"]


def foreign_journal(trained, tmp_path):
    return _journal(tmp_path, json.dumps({"journal": 1, "key": "0123456789ab", "episodes": 2}) + "\n")


def damaged_journal(trained, tmp_path):
    return _journal(tmp_path, "this is not a journal\n")


#: id -> (overrides or a function making them, message parts that must all appear)
CASES: dict[str, tuple[list[str] | Callable, list[str]]] = {
    # keys and types (the typed schema, grasp/schema.py)
    "typo key": (["eval.episodez=3"], ["eval.episodez"]),
    "typo key added with +": (["+eval.episodez=3"], ["'eval.episodez' is unknown", "episodes", "batch_size"]),
    "typo planner key": (["+planner.sigma_initt=0.1"], ["'planner.sigma_initt' is unknown", "sigma_init"]),
    "typo env key": (["+env.wall_thicknes=1"], ["'env.wall_thicknes' is unknown", "allowed keys"]),
    "wrong type, run key": (["eval.episodes=many"], ["eval.episodes"]),
    "wrong type, planner key": (["planner.iterations=lots"], ["planner.iterations", "expects int"]),
    "unknown planner": (["planner=nope"], ["planner", "grasp", "cem"]),
    # values and ranges
    "negative sigma": (["planner.sigma_init=-0.1"], ["planner.sigma_init", "[0.0, inf]"]),
    "horizon 0": (["horizon=0"], ["'horizon'", "integer >= 1"]),
    "train.lr 0": (["train.lr=0"], ["'train.lr'", "> 0"]),
    "sync lr 0": (["planner.sync_lr=0"], ["planner.sync_lr", "> 0"]),
    "planner lr negative": (["planner.lr_states=-0.1"], ["planner.lr_states", "[0.0, inf]"]),
    "gd lr negative": (["planner=gd", "planner.lr=-0.1"], ["planner.lr", "> 0"]),
    "unknown schedule": (["planner.sigma_schedule=wiggly"], ["planner.sigma_schedule", "cosine"]),
    "unknown device": (["device=tpu"], ["'device'", "cuda"]),
    "stages out of order": (["stages=[evaluate,train]"], ["'stages'", "in the order"]),
    "unknown wandb mode": (["logger.wandb.mode=loud"], ["logger.wandb.mode", "offline"]),
    "eval batch 0": (["eval.batch_size=0"], ["eval.batch_size", "integer >= 1"]),
    "unknown nonfinite policy": (["train.nonfinite=maybe"], ["train.nonfinite", "skip"]),
    "sync never runs": (["planner.sync_every=1000"], ["planner.sync_every", "planner.iterations"]),
    "no scripted policy": (["data.policy=scripted"], ["data.policy=scripted", "uniform"]),
    "unknown noise streams": (["eval.noise_streams=each"], ["eval.noise_streams", "per_episode"]),
    "env frame_skip 0": (["env.frame_skip=0"], ["env.frame_skip"]),
    "restarts 0": (["planner.restarts=0"], ["planner.restarts", "[1, inf]"]),
    "fp16": (["precision=fp16"], ["'precision'", "fp16", "bf16"]),
    "device cuda:x": (["device=cuda:x"], ["'device'", "cuda:N"]),
    # files
    "missing checkpoint": (["checkpoint=/nonexistent/model.pt"], ["'checkpoint'", "existing checkpoint file"]),
    "truncated checkpoint": (truncated_checkpoint, ["truncated.pt", "could not be read"]),
    "checkpoint of another env": (other_env_checkpoint, ["trained on env 'wall'", "'point_mass'"]),
    "checkpoint of another version": (wrong_version_checkpoint, ["edited.pt", "version"]),
    "checkpoint with NaN weights": (nan_checkpoint, ["edited.pt", "NaN"]),
    "checkpoint weights of another shape": (mismatched_weights_checkpoint, ["edited.pt", "does not hold a world model"]),
    "no cached dataset, collect skipped": (["stages=[train,evaluate]"], ["no cached dataset at", "'collect' is not in"]),
    "no cached model, train skipped": (["stages=[evaluate]"], ["no cached world model at", "'train' is not in"]),
    "dataset of another version": (dataset_of_another_version, [".npz", "version: file has 0, expected 1",
                                                                "state_dim: file has 3, expected 4"]),
    "truncated dataset": (truncated_dataset, [".npz", "could not be read as a grasp dataset"]),
    "inconsistent dataset": (inconsistent_dataset, [".npz", "inconsistent arrays", "actions (N, L, A)"]),
    "missing protocol": (["eval.protocol=/nonexistent/pairs.json"], ["eval.protocol", "existing protocol file"]),
    "truncated protocol": (truncated_protocol, ["pairs.json", "not a readable protocol"]),
    "protocol of another env": (other_env_protocol, ["pairs.json", "'pusht'", "'wall'"]),
    "protocol of other dims": (protocol_of_other_dims, ["pairs.json", "state_dim 3", "state_dim 4"]),
    "protocol too short": (short_protocol, ["pairs.json", "holds 1 episodes", "eval.episodes asks for 2"]),
    "protocol of another version": (wrong_version_protocol, ["pairs.json", "version 7"]),
    "journal of another config": (foreign_journal, [JOURNAL_NAME, "another configuration", "resume=false"]),
    "damaged journal": (damaged_journal, [JOURNAL_NAME, "not an episode journal"]),
}


class _Trap:
    """Unpickled with weights_only=False, this would run code: it touches a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_unrun(trained, tmp_path):
    marker = tmp_path / "code_ran"
    overrides = _checkpoint_copy(trained, tmp_path, lambda p: p.update(note=_Trap(marker)))
    with pytest.raises(ConfigError, match="edited.pt was refused: it holds Python objects"):
        cfg = compose_config(TINY + [f"paths.root_dir={tmp_path}/fresh", f"paths.output_dir={tmp_path}/run", *overrides])
        runner.run(cfg, Path(cfg.paths.output_dir))
    assert not marker.exists(), "loading the checkpoint ran its code"
    torch.load(tmp_path / "edited.pt", weights_only=False)  # the trap is real: a trusting load springs it
    assert marker.exists()


def test_the_table_has_at_least_twenty_bad_inputs():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_error_before_any_work(case, trained, tmp_path):
    make, parts = CASES[case]
    overrides = make(trained, tmp_path) if callable(make) else make
    root = tmp_path / "fresh"  # where a run that wrongly went ahead would cache its work
    base = TINY + [f"paths.root_dir={root}", f"paths.output_dir={tmp_path}/run"]
    with pytest.raises(CLEAR) as caught:
        cfg = compose_config(base + overrides)
        runner.run(cfg, Path(cfg.paths.output_dir))
    error = caught.value
    message = str(error) + (str(error.__cause__) if isinstance(error, ConfigCompositionException) else "")
    missing = [part for part in parts if part not in message]
    assert not missing, f"{case}: the message lacks {missing}:\n{message}"
    assert "Traceback" not in message
    made = [p for p in (root / "outputs" / "cache").rglob("*") if p.suffix in (".pt", ".npz")]
    assert not made, f"no data was collected and no model trained: {made}"
