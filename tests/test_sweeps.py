"""Sweeps as users launch them, in subprocesses: two jobs through the submitit_local launcher
(each its own process, as on SLURM) and an Optuna search of two trials; each job's results file
and its offline W&B run (config, group, job type, summary) are read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, TINY, run_cli
from wandb_files import read_offline_run

pytestmark = pytest.mark.slow


def job_runs(sweep, jobs: int) -> list[dict]:
    runs = []
    for job in range(jobs):
        (run_dir,) = (sweep / str(job) / "wandb").glob("offline-run-*")
        runs.append(read_offline_run(run_dir))
    return runs


def test_submitit_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "launcher=submitit_local",
                    "planner=grasp,cem", "exp_name=submitit_test", "logger.wandb.mode=offline"], cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit kept each job's log"
    per_job = [pd.read_csv(sweep / str(job) / "results.csv") for job in (0, 1)]
    assert [set(df["planner"]) for df in per_job] == [{"grasp"}, {"cem"}]
    assert len(pd.read_csv(sweep / "results.csv")) == 4, "the sweep callback gathered both jobs"
    for run, planner in zip(job_runs(sweep, 2), ("grasp", "cem")):
        assert run["run"].run_group == "submitit_test" and run["run"].job_type == planner
        assert run["run"].display_name == f"{planner}-H6-0"
        assert run["config"]["planner"]["horizon"] == 6 and run["config"]["exp_name"] == "submitit_test"
        assert run["summary"]["eval/episodes"] == 2
        assert run["summary"]["eval/success_rate"] == pytest.approx(per_job[("grasp", "cem").index(planner)]
                                                                     ["success"].mean())
    # the sweep becomes a table: a row for the horizon, a column per planner
    tables = subprocess.run([sys.executable, "scripts/make_tables.py", str(sweep)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert tables.returncode == 0, tables.stderr
    layout = pd.read_csv(sweep / "tables" / "table.csv")
    assert list(layout.columns) == ["env", "H (env steps)", "oracle %", "cem", "cem any-step %", "cem model %",
                                    "grasp", "grasp any-step %", "grasp model %"]
    assert list(layout["H (env steps)"]) == [6]


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}",
                    "hparams_search=grasp_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                    "exp_name=optuna_test", "logger.wandb.mode=offline"], cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and set(best["best_params"]) >= {"planner.lr_states", "planner.sync_every"}
    runs = job_runs(sweep, 2)
    objectives = [run["summary"]["eval/objective"] for run in runs]
    assert best["best_value"] == pytest.approx(max(objectives))
    for job, run in enumerate(runs):
        results = pd.read_csv(sweep / str(job) / "results.csv")
        assert set(results["planner"]) == {"grasp"} and (results["seed"] == 100).all(), "validation pairs: seed 100"
        assert run["run"].run_group == "optuna_test"
        # each trial's sampled knobs are in its config and its overrides
        assert 0.003 <= run["config"]["planner"]["lr_states"] <= 0.3
        assert f"planner.lr_states={run['config']['planner']['lr_states']}" in run["config"]["overrides"].split()
    assert runs[0]["config"]["planner"]["lr_states"] != runs[1]["config"]["planner"]["lr_states"]


def _trial_states(storage: str, study: str) -> list[str]:
    """The study's trial states, read through a read-only SQLite connection: opening the storage
    through Optuna would create its tables, racing the sweep that is creating them."""
    import sqlite3
    from contextlib import closing

    path = Path(storage[len("sqlite:///"):])
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                              "WHERE s.study_name = ? ORDER BY t.number", (study,)).fetchall()
    except sqlite3.OperationalError:  # the sweep has not created its tables yet, or holds a write lock
        return []
    return [state for (state,) in rows]


def test_a_killed_optuna_search_resumes_its_study_and_finishes_it(tmp_path):
    """Killed once its first trial is complete, the same command finishes the same study: three
    completed trials in all, the killed trial marked failed, no trial's run dir overwritten."""
    import os
    import signal
    import time

    sweep = tmp_path / "search"
    storage = f"sqlite:///{sweep}/optuna.db"
    command = ["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "hparams_search=grasp_optuna",
               "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2", "exp_name=resume_test"]
    env = {**os.environ, "WANDB_SILENT": "true"}
    log = tmp_path / "victim.log"
    with log.open("w") as out:
        victim = subprocess.Popen([sys.executable, "-m", "grasp.run", *command], cwd=REPO_ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 1200  # bounds a hang only; a busy machine can take minutes
    try:
        while "COMPLETE" not in (states := _trial_states(storage, "resume_test")) or len(states) < 2:
            assert victim.poll() is None, "the search ended before it could be killed:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial completed in time"
            time.sleep(0.2)
    finally:
        try:
            os.killpg(victim.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended by itself; the assertion above says how
            pass
        victim.wait()
    killed = _trial_states(storage, "resume_test")
    assert killed.count("COMPLETE") < 3 and "RUNNING" in killed
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/results.csv")}

    proc = run_cli(command, cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{killed.count('COMPLETE')} of 3 trials complete" in proc.stdout + proc.stderr
    final = _trial_states(storage, "resume_test")
    assert final.count("COMPLETE") == 3 and final[: len(killed)].count("RUNNING") == 0
    assert final.count("FAIL") == killed.count("RUNNING")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "finished trials' results were not rewritten"
    assert len(list(sweep.glob("*/results.csv"))) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in __import__("optuna").load_study(
        study_name="resume_test", storage=storage).trials if t.state.name == "COMPLETE")


def _submitit_tasks(folder) -> list[int]:
    """The pids of the processes running submitit jobs whose files are under `folder`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"submitit.core._submit" in cmdline and any(str(folder).encode() in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


def test_a_requeued_submitit_job_resumes_its_evaluation(tmp_path):
    """Preempted (submitit's USR2, as SLURM sends it), a job is checkpointed and requeued with its
    config; launcher=submitit_local (like slurm) sets resume=true, so the requeued job keeps the
    episodes in its journal and plans only the rest."""
    import os
    import signal
    import time

    sweep = tmp_path / "sweep"
    slow = ["planner=grasp", "planner.iterations=60", "eval.max_steps=15", "horizon=8", "eval.episodes=6",
            "eval.batch_size=2"]
    env = {**os.environ, "WANDB_SILENT": "true"}
    command = [sys.executable, "-m", "grasp.run", "-m", *TINY, *slow, f"paths.root_dir={tmp_path}",
               f"hydra.sweep.dir={sweep}", "launcher=submitit_local", "seed=0"]
    sweeper = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    journal = sweep / "0" / "episodes.jsonl"
    deadline = time.monotonic() + 1200  # bounds a hang only
    try:
        while not (journal.exists() and len(journal.read_text().splitlines()) - 1 >= 2):
            assert sweeper.poll() is None, "the sweep ended before its job could be preempted"
            assert time.monotonic() < deadline, "no batch reached the journal in time"
            time.sleep(0.05)
        before = journal.read_text().splitlines()[1:3]  # the first batch, as first written
        (task,) = _submitit_tasks(sweep)
        os.kill(task, signal.SIGUSR2)
        output, _ = sweeper.communicate(timeout=1200)
    finally:
        if sweeper.poll() is None:
            os.killpg(sweeper.pid, signal.SIGKILL)
    assert sweeper.returncode == 0, output[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "Requeued job" in logs, "the job was preempted and requeued"
    assert "of 6 episodes already in" in logs, "the requeued job resumed from its journal"
    assert not (sweep / "0" / "episodes.previous.jsonl").exists(), "the evaluation did not start over"
    assert journal.read_text().splitlines()[1:3] == before
    assert len(pd.read_csv(sweep / "0" / "results.csv")) == 6


@pytest.mark.parametrize("pretrain", [True, False])
def test_parallel_jobs_sharing_a_missing_model_find_it_trained_by_a_pretrain_job(tmp_path, pretrain):
    """Two joblib jobs need one model that is not cached: the sweeper trains it in pretrain/0 first,
    so neither job trains (or waits on the training lock); with pretrain off one of them trains.
    With no thread count fixed (no OMP_NUM_THREADS), the lone pretrain job computes on every core
    and the two jobs after it on half of them each, as joblib sizes its two workers."""
    from joblib import cpu_count

    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "launcher=joblib",
                    "planner=cem,gd", f"hydra.sweeper.pretrain={str(pretrain).lower()}",
                    f"hydra.sweeper.warm_workers={str(pretrain).lower()}"], cwd=REPO_ROOT, timeout=600,
                   unset=("OMP_NUM_THREADS",))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = [(sweep / str(job) / "run.log").read_text() for job in (0, 1)]
    trained = ["train: wrote" in log for log in logs]
    assert all(f"threads: {max(cpu_count() // 2, 1)} torch thread(s)" in log for log in logs)
    if pretrain:
        pretrain_log = (sweep / "pretrain" / "0" / "run.log").read_text()
        assert "train: wrote" in pretrain_log and f"threads: {cpu_count()} torch thread(s)" in pretrain_log
        assert trained == [False, False] and all("reusing cached world model" in log for log in logs)
        assert not (sweep / "pretrain" / "0" / "results.csv").exists()
    else:
        assert not (sweep / "pretrain").exists() and sum(trained) == 1
    assert len(pd.read_csv(sweep / "results.csv")) == 4


def test_joblib_workers_warmed_at_the_sweep_start_are_the_ones_its_jobs_run_in():
    """The sweeper's warm-up (begun before the jobs are checked) leaves each worker with the
    runner and torch's lazily imported optimizer machinery loaded, and the launcher's Parallel,
    built from the same conf/launcher/joblib.yaml settings, runs its jobs in those workers."""
    import os
    import sys

    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from omegaconf import OmegaConf

    from conftest import compose_config
    from hydra_plugins.grasp_sweeper.grasp_sweeper import _start_warm_up

    launcher = OmegaConf.to_container(compose_config(["launcher=joblib"], return_hydra_config=True).hydra.launcher)
    settings = {key: value for key, value in launcher.items() if key != "_target_"}
    warmed = set(_start_warm_up(settings, wandb=False))
    assert len(warmed) == settings["n_jobs"] == 2
    config = {**settings, "backend": "loky"}
    process_joblib_cfg(config)
    seen = Parallel(**config)(delayed(lambda: (os.getpid(), {"grasp.run", "torch._dynamo"} <= set(sys.modules)))()
                              for _ in range(4))
    assert {pid for pid, _ in seen} <= warmed
    assert all(loaded for _, loaded in seen)


@pytest.mark.parametrize("mode, env, expected", [
    (None, None, True),  # null: WANDB_MODE, else offline
    (None, "disabled", False),
    ("offline", "disabled", True),  # the config wins
    ("disabled", None, False),
    ("sometimes", None, False),  # a bad mode: the jobs' checks report it, the warm-up skips W&B
])
def test_warm_workers_start_wandb_only_for_sweeps_that_log_to_it(monkeypatch, mode, env, expected):
    from omegaconf import OmegaConf

    from hydra_plugins.grasp_sweeper.grasp_sweeper import _logs_to_wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    if env is not None:
        monkeypatch.setenv("WANDB_MODE", env)
    assert _logs_to_wandb(OmegaConf.create({"logger": {"wandb": {"mode": mode}}})) is expected


@pytest.mark.parametrize("shared, fixed, n_jobs, expected", [
    (1, {}, 2, "all"),  # one model, two workers: it gets every core
    (2, {}, 2, None),  # as many models as workers: joblib's own share is right
    (1, {"OMP_NUM_THREADS": "1"}, 2, None),  # the user fixed the count
    (1, {"threads": 1}, 2, None),
    (1, {}, 1, None),  # one worker already has every core
])
def test_pretrain_jobs_share_the_cores_a_joblib_batch_would_leave_idle(monkeypatch, shared, fixed, n_jobs, expected):
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from joblib import cpu_count
    from omegaconf import OmegaConf

    from hydra_plugins.grasp_sweeper.grasp_sweeper import PreflightSweeper

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if "OMP_NUM_THREADS" in fixed:
        monkeypatch.setenv("OMP_NUM_THREADS", fixed["OMP_NUM_THREADS"])
    sweeper = PreflightSweeper()
    sweeper.launcher, sweeper.config = JoblibLauncher(n_jobs=n_jobs), OmegaConf.create({"threads": fixed.get("threads")})
    jobs = [[f"planner={name}"] for name in ("cem", "gd")[:shared]]
    assert sweeper._pretrain_threads(jobs) == (cpu_count() if expected == "all" else expected)


def test_optuna_trials_run_in_parallel_jobs_on_one_persistent_study(tmp_path):
    sweep = tmp_path / "search"
    proc = run_cli(["-m", *TINY, f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "hparams_search=grasp_optuna",
                    "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.n_startup_trials=2",
                    "launcher=joblib", "exp_name=parallel_test"], cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("is launching 2 jobs") == 2, "two batches of two parallel trials"
    assert _trial_states(f"sqlite:///{sweep}/optuna.db", "parallel_test") == ["COMPLETE"] * 4
    assert len(list(sweep.glob("*/results.csv"))) == 4
