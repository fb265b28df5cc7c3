"""W&B as its users expect: WANDB_MODE is honoured unless the config sets a mode, a bad mode
fails before any work, and an online run that cannot start logs offline with one warning. Real
wandb, its offline files read back (wandb_files)."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from conftest import REPO_ROOT, TINY, run_cli
from grasp.errors import ConfigError
from grasp.loggers import WandbRun, wandb_mode
from wandb_files import read_offline_run


@pytest.mark.parametrize("configured, env, mode", [
    (None, None, "offline"), (None, "disabled", "disabled"), (None, "online", "online"), (None, "dryrun", "offline"),
    ("offline", "disabled", "offline"), ("disabled", "online", "disabled"),
])
def test_the_config_sets_the_mode_else_wandb_mode_else_offline(monkeypatch, configured, env, mode):
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    assert wandb_mode(configured) == mode


def test_a_bad_mode_names_where_it_came_from(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="WANDB_MODE = 'sometimes'"):
        wandb_mode(None)
    with pytest.raises(ConfigError, match="logger.wandb.mode"):
        wandb_mode("loud")


@pytest.mark.slow
def test_wandb_mode_disabled_is_honoured_by_a_run(tmp_path, monkeypatch):
    unset = [o for o in TINY if not o.startswith("logger.wandb.mode")] + ["logger.wandb.mode=null"]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    proc = run_cli(unset + [f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run"], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "results.csv").exists() and not (tmp_path / "run" / "wandb").exists()


def test_an_online_run_without_an_api_key_logs_offline_with_one_warning(tmp_path, monkeypatch, caplog):
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no stored login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    cfg = OmegaConf.create({"mode": "online", "project": "grasp-test", "entity": None, "group": None, "job_type": None,
                            "name": None, "tags": [], "log_checkpoint": False})
    with caplog.at_level(logging.WARNING, logger="grasp.loggers"):
        run = WandbRun(cfg, tmp_path, name="fallback", config={"a": 1}, tags=[])
        run.summary({"x": 1.5})
        run.finish()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "logging offline instead" in warnings[0].getMessage()
    assert run.mode == "offline"
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    stored = read_offline_run(run_dir)
    assert stored["config"]["a"] == 1 and stored["summary"]["x"] == 1.5
