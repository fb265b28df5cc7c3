"""Every config in conf/ composes and resolves; bad run-level values fail early and clearly."""

from __future__ import annotations

import itertools

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import compose_config, resolved
from grasp.config import CONF_DIR, check_config
from grasp.errors import ConfigError

GROUPS = ["env", "world_model", "planner", "logger", "launcher", "tuning", "ablation", "hparams_search"]
#: groups whose options interact (a planner's bounds and horizon with a task, a pixel model with a
#: task's frames): every pair is composed; the other groups' options are composed one at a time
PAIRED = [("env", "planner"), ("env", "world_model")]


def resolve_job_config(cfg) -> dict:
    """Resolve every interpolation of the job's config (the hydra node is Hydra's own)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def options(group: str) -> list[str]:
    """A group's options, nested ones as Hydra names them (experiment: suite/pusht)."""
    root = CONF_DIR / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def test_every_group_has_options_and_defaults_compose():
    for group in GROUPS + ["experiment", "paths", "hydra"]:
        assert options(group), f"conf/{group}/ is empty"
    cfg = compose_config()
    assert cfg.exp_name == "default" and cfg.logger.wandb.mode is None  # WANDB_MODE, else offline


def combinations() -> list[tuple[str, ...]]:
    """Overrides to compose: every pair of options of the PAIRED groups, and every option of the
    other groups on the defaults."""
    combos = [(f"{a}={x}", f"{b}={y}") for a, b in PAIRED for x, y in itertools.product(options(a), options(b))]
    alone = [g for g in GROUPS if not any(g in pair for pair in PAIRED)]
    return combos + [(f"{g}={o}",) for g in alone for o in options(g)]


@pytest.mark.parametrize("combo", combinations(), ids=lambda c: "-".join(o.split("=")[1] for o in c))
def test_every_group_option_composes_and_resolves(combo, tmp_path):
    cfg = compose_config(list(combo) + [f"paths.output_dir={tmp_path}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    resolve_job_config(cfg)
    assert cfg.planner.horizon == cfg.horizon
    check_config(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}", f"paths.output_dir={tmp_path}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    resolve_job_config(cfg)
    assert cfg.exp_name == experiment.replace("/", "_")
    assert f"/{cfg.exp_name}/" in cfg.hydra.run.dir, "run dir must be outputs/<experiment>/<date>/<time>"
    check_config(cfg)


def test_quick_experiment_sweeps_the_three_planners():
    cfg = compose_config(["experiment=quick"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.planner.split(",") == ["gd", "cem", "grasp_mpc"]  # the long jobs first


def test_the_suite_has_one_preset_per_task_sweeping_grasp_and_cem():
    suite = [name.removeprefix("suite/") for name in options("experiment") if name.startswith("suite/")]
    assert suite == options("env")
    for task in suite:
        cfg = compose_config([f"experiment=suite/{task}"], return_hydra_config=True)
        assert cfg.env._target_ == compose_config([f"env={task}"]).env._target_
        assert cfg.hydra.sweeper.params.planner.split(",") == ["grasp", "cem"]
        assert cfg.eval.max_steps >= cfg.horizon and cfg.eval.episodes >= 10


@pytest.mark.parametrize("task", ["wall", "pusht"])
def test_pixel_presets_evaluate_on_the_suite_protocol(task):
    state, pixel = (resolved(compose_config([f"experiment={kind}/{task}"])) for kind in ("suite", "pixel"))
    assert pixel.frame_size == 64 and state.frame_size is None
    assert pixel.protocol_path == state.protocol_path, "one protocol file serves both models"


@pytest.mark.parametrize("override, key", [
    ("stages=[train,collect]", "stages"),
    ("stages=[bogus]", "stages"),
    ("device=tpu", "device"),
    ("logger.wandb.mode=sometimes", "logger.wandb.mode"),
    ("horizon=0", "horizon"),
    ("data.policy=brownian", "data.policy"),
    ("eval.episodes=0", "eval.episodes"),
    ("eval.replan_every=99", "eval.replan_every"),
    ("train.lr=-1", "train.lr"),
    ("train.checkpoint_every=-5", "train.checkpoint_every"),
    ("checkpoint=/no/such/file.pt", "checkpoint"),
    ("eval.noise_streams=private", "eval.noise_streams"),
    ("eval.objective_time_weight=-1", "eval.objective_time_weight"),
    ("compile=fast", "compile"),
    ("precision=fp8", "precision"),
    ("threads=0", "threads"),
])
def test_bad_run_values_name_the_key(override, key):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=f"'{key}'"):
        check_config(cfg)


def test_precision_offers_fp32_bf16_and_auto_only():
    # fp16 would need loss scaling the planners do not do: refused, with what is allowed
    with pytest.raises(ConfigError, match=r"'precision'.*\['fp32', 'bf16', 'auto'\]"):
        check_config(compose_config(["precision=fp16"]))
    for precision in ("bf16", "auto"):
        check_config(compose_config([f"precision={precision}", "device=cpu"]))


@pytest.mark.parametrize("name, ok", [("cuda:1", True), ("cuda:12", True), ("cpu", True), ("auto", True),
                                      ("cuda:", False), ("gpu", False), ("cuda:x", False), ("CPU", False)])
def test_device_names(name, ok):
    from grasp.utils import is_device_name

    assert is_device_name(name) is ok
    if not ok:
        with pytest.raises(ConfigError, match="'device'"):
            check_config(compose_config([f"device={name}"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_a_cuda_device_without_cuda_is_one_clear_error():
    from grasp.utils import resolve_device

    with pytest.raises(RuntimeError, match="device=cuda:1 was requested but torch sees no CUDA device"):
        resolve_device("cuda:1")


def test_unknown_planner_name_lists_the_planners():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="planner/foo") as err:
        compose_config(["planner=foo"])
    assert set(err.value.options) == set(options("planner"))


# ---- the paper's presets, tuned planners and ablation rows-------------------------------------------
def test_paper_long_horizon_sweeps_40_to_80_env_steps_open_loop():
    import hydra

    cfg = compose_config(["experiment=paper_long_horizon"], return_hydra_config=True)
    task = hydra.utils.instantiate(cfg.env)
    horizons = [int(h) for h in cfg.hydra.sweeper.params.horizon.split(",")]
    assert [h * task.env_steps_per_model_step for h in horizons] == [40, 50, 60, 70, 80]
    assert cfg.hydra.sweeper.params.planner.split(",") == ["grasp", "cem", "gd", "latco"]
    assert cfg.eval.open_loop and cfg.eval.episodes == 50 and cfg.eval.goal_source == "rollout"
    task.close()


@pytest.mark.parametrize("tuning", options("tuning"))
def test_a_tuning_applies_each_planners_file_and_yields_to_the_command_line(tuning):
    tuned = CONF_DIR / "tuned" / tuning
    assert tuned.is_dir(), f"conf/tuning/{tuning}.yaml needs conf/tuned/{tuning}/"
    for path in sorted(tuned.glob("*.yaml")):
        planner = path.stem
        assert planner in options("planner"), f"{path}: no planner {planner!r}"
        knobs = OmegaConf.load(path)
        cfg = compose_config([f"tuning={tuning}", f"planner={planner}"])
        assert all(cfg.planner[k] == v for k, v in knobs.items()), f"{path} was not applied"
        default = compose_config([f"planner={planner}"]).planner
        assert any(default[k] != v for k, v in knobs.items()), f"{path} changes nothing"
        key, value = next(iter(knobs.items()))
        overridden = compose_config([f"tuning={tuning}", f"planner={planner}", f"planner.{key}={value + 1}"])
        assert overridden.planner[key] == value + 1, "the command line beats a tuned file"
    # planners without a file keep their own configuration
    untuned = [p for p in options("planner") if not (tuned / f"{p}.yaml").exists()]
    for planner in untuned[:2]:
        assert compose_config([f"tuning={tuning}", f"planner={planner}"]).planner == \
            compose_config([f"planner={planner}"]).planner


@pytest.mark.parametrize("row", options("ablation"))
def test_each_ablation_row_changes_only_grasp_knobs(row):
    base = OmegaConf.to_container(compose_config(["experiment=paper_ablation"]), resolve=True)
    cfg = OmegaConf.to_container(compose_config(["experiment=paper_ablation", f"ablation={row}"]), resolve=True)
    assert {k: v for k, v in cfg.items() if k != "planner"} == {k: v for k, v in base.items() if k != "planner"}
    changed = {k for k in cfg["planner"] if cfg["planner"][k] != base["planner"][k]}
    assert (changed == set()) == (row == "full"), f"{row} changes {changed}"
    assert changed <= {"sigma_init", "sigma_final", "sync", "sync_steps", "alpha", "gamma_init", "gamma_final"}


def test_paper_ablation_sweeps_every_row_at_the_first_long_horizon():
    cfg = compose_config(["experiment=paper_ablation"], return_hydra_config=True)
    assert sorted(cfg.hydra.sweeper.params.ablation.split(",")) == options("ablation")
    assert cfg.horizon == 8 and cfg.planner.sync_every == 100 and cfg.planner.iterations >= 200


@pytest.mark.parametrize("task", ["wall", "point_maze_medium", "pusht"])
def test_paper_short_horizon_reuses_the_suite_model_closed_loop(task):
    cfg = compose_config([f"experiment=paper_short_horizon/{task}"], return_hydra_config=True)
    suite = compose_config([f"experiment=suite/{task}"])
    assert resolved(cfg).model_key == resolved(suite).model_key, "the suite's cached model serves the short horizons"
    assert cfg.hydra.sweeper.params.horizon.split(",") == ["10", "20", "30"]
    assert cfg.hydra.sweeper.params.planner.split(",") == ["grasp", "cem", "gd", "latco"]
    assert not cfg.eval.open_loop and cfg.eval.max_steps >= 2 * 30
