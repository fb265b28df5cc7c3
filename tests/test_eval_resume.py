"""Interrupted evaluations and sweeps lose nothing: each finished batch of episodes is in the run
dir's journal at once; a run killed mid-evaluation and rerun with resume=true plans only the
batches it had not finished and ends with the results of an uninterrupted run; a rerun sweep
skips its finished jobs. No half-written file is ever left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY, compose_config, run_cli
from grasp import runner
from grasp.eval import runner as eval_runner
from grasp.errors import ConfigError
from grasp.eval.journal import JOURNAL_NAME, EpisodeJournal
from grasp.eval.metrics import RESULT_COLUMNS, TIMING_COLUMNS

#: a results.csv less its wall-clock columns: what must be identical run to run on one machine
def deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)


def leftovers(directory: Path) -> list[Path]:
    """Temporary files of atomic writes that an interrupted write would leave (it must not)."""
    return [p for p in directory.rglob(".*.tmp")]


# ---- the journal itself ---------------------------------------------------------------------------
def test_journal_round_trips_rows_exactly_and_drops_a_torn_last_line(tmp_path):
    journal = EpisodeJournal(tmp_path / JOURNAL_NAME, key="abc", episodes=3)
    assert journal.start(resume=True) == {}
    rows = [{"episode": 0, "final_distance": 0.1 + 0.2, "time_to_success": float("nan"), "success": True},
            {"episode": 1, "final_distance": 1e-300, "time_to_success": 2.5, "success": False}]
    journal.append(rows)
    with open(journal.path, "a") as fh:  # a kill in the middle of writing episode 2's line
        fh.write('{"episode": 2, "final_dis')
    read = journal.read()
    assert sorted(read) == [0, 1] and read[0]["final_distance"] == 0.1 + 0.2  # floats exact
    assert read[1]["final_distance"] == 1e-300 and read[0]["time_to_success"] != read[0]["time_to_success"]  # NaN
    # resuming rewrites the file whole, so the next row does not run into the torn line
    assert sorted(journal.start(resume=True)) == [0, 1]
    journal.append([{"episode": 2, "final_distance": 3.0, "time_to_success": 1.0, "success": True}])
    assert sorted(journal.read()) == [0, 1, 2]


def test_starting_over_keeps_the_old_journal(tmp_path):
    journal = EpisodeJournal(tmp_path / JOURNAL_NAME, key="abc", episodes=1)
    journal.start(resume=False)
    journal.append([{"episode": 0, "success": True}])
    assert journal.start(resume=False) == {}
    previous = EpisodeJournal(tmp_path / "episodes.previous.jsonl", key="abc", episodes=1)
    assert sorted(previous.read()) == [0], "resume=false never deletes finished episodes"


def test_a_damaged_middle_line_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / JOURNAL_NAME
    path.write_text(json.dumps({"journal": 1, "key": "k", "episodes": 2}) + '\n{"episode": 0\n{"episode": 1}\n')
    with pytest.raises(ConfigError, match=f"{JOURNAL_NAME} line 2"):
        EpisodeJournal(path, key="k", episodes=2).read()


# ---- in process: batches, resume, determinism ------------------------------------------------------
def test_the_planner_warms_up_before_its_first_timed_batch(tmp_path, monkeypatch):
    from grasp.planners.base import Planner

    calls = []
    monkeypatch.setattr(Planner, "warm_up", lambda self: calls.append("warm_up"))
    original = eval_runner.evaluate_batch
    monkeypatch.setattr(eval_runner, "evaluate_batch", lambda *args: (calls.append("batch"), original(*args))[1])
    cfg = compose_config(TINY + [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/run", "planner=gd",
                                 "eval.batch_size=1"])
    runner.run(cfg, Path(cfg.paths.output_dir))
    assert calls == ["warm_up", "batch", "batch"]


def test_batches_resume_and_determinism_in_process(tmp_path):
    """Same config and seed -> identical results; with eval.batch_size=2 a resumed evaluation
    that finds batches in its journal plans only the others and ends identical too."""
    base = TINY + [f"paths.root_dir={tmp_path}", "eval.episodes=5", "eval.batch_size=2", "planner=grasp"]

    def run(name: str, *extra: str) -> pd.DataFrame:
        cfg = compose_config(base + [f"paths.output_dir={tmp_path}/{name}", *extra])
        runner.run(cfg, Path(cfg.paths.output_dir))
        return pd.read_csv(tmp_path / name / "results.csv")

    first, second = run("a"), run("b")
    assert list(first.columns) == RESULT_COLUMNS and list(first["episode"]) == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(deterministic(first), deterministic(second))

    # cut run a's journal back to its first batch and a half (as a kill in batch 2 would leave it)
    journal = tmp_path / "a" / JOURNAL_NAME
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:4]) + "\n")  # header, episodes 0 and 1, episode 2 of batch [2, 3]
    planned = []
    original = eval_runner.evaluate_batch

    def spy(job, planner, protocol, episodes, watch):
        planned.append(list(episodes))
        return original(job, planner, protocol, episodes, watch)

    eval_runner.evaluate_batch = spy
    try:
        resumed = run("a", "resume=true")
    finally:
        eval_runner.evaluate_batch = original
    assert planned == [[2, 3], [4]], "finished batches are not planned again"
    pd.testing.assert_frame_equal(deterministic(resumed), deterministic(first))
    # episode 2's row is the one written before the interruption (recomputed identically)
    assert resumed.loc[2, "plan_time"] == first.loc[2, "plan_time"]
    assert not leftovers(tmp_path)


# ---- as a user sees it: a killed job, a rerun sweep ------------------------------------------------
SLOW_EVAL = ["planner=grasp", "planner.iterations=60", "eval.max_steps=15", "horizon=8", "eval.episodes=6",
             "eval.batch_size=2"]


def wait_for_rows(journal: Path, rows: int, process: subprocess.Popen, timeout: float = 1200) -> None:
    """Until the journal holds `rows` rows; the wide timeout only bounds a hang (a busy machine
    can take minutes), the process ending early fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) - 1 >= rows:
            return
        if process.poll() is not None:
            seen = sorted(str(p.relative_to(journal.parents[1])) for p in journal.parents[1].rglob("*.jsonl"))
            pytest.fail(f"the run ended (rc {process.returncode}) before it could be interrupted; journals: {seen}")
        time.sleep(0.05)
    pytest.fail("no batch reached the journal in time")


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_evaluation_resumes_at_its_first_unfinished_episode(tmp_path, signal_name):
    base = TINY + [f"paths.root_dir={tmp_path}", *SLOW_EVAL]
    reference = run_cli(base + [f"hydra.run.dir={tmp_path}/reference"], cwd=REPO_ROOT)
    assert reference.returncode == 0, reference.stderr[-3000:]

    env = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "grasp.run", *base, f"hydra.run.dir={tmp_path}/run"]
    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    journal = tmp_path / "run" / JOURNAL_NAME
    try:
        wait_for_rows(journal, 2, victim)  # the first batch is in
    finally:
        os.killpg(victim.pid, getattr(signal, signal_name))
        victim.wait()
    kept = len(journal.read_text().splitlines()) - 1
    assert 2 <= kept < 6, "killed with some, not all, episodes done"
    assert not (tmp_path / "run" / "results.csv").exists()

    rerun = run_cli(base + [f"hydra.run.dir={tmp_path}/run", "resume=true"], cwd=REPO_ROOT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "of 6 episodes already in" in rerun.stdout + rerun.stderr
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    expected = pd.read_csv(tmp_path / "reference" / "results.csv")
    pd.testing.assert_frame_equal(deterministic(results), deterministic(expected))
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_a_rerun_sweep_with_resume_skips_finished_jobs_and_finishes_the_interrupted_one(tmp_path):
    base = TINY + [f"paths.root_dir={tmp_path}", *(o for o in SLOW_EVAL if not o.startswith("planner="))]
    sweep = ["-m", "planner=gd,grasp"]
    reference = run_cli(sweep + base + [f"hydra.sweep.dir={tmp_path}/reference"], cwd=REPO_ROOT, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    env = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "grasp.run", *sweep, *base, f"hydra.sweep.dir={tmp_path}/sweep"]
    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for_rows(tmp_path / "sweep" / "1" / JOURNAL_NAME, 2, victim)  # job 0 done, job 1 part way
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    assert (tmp_path / "sweep" / "0" / "results.csv").exists()
    assert not (tmp_path / "sweep" / "1" / "results.csv").exists()

    rerun = run_cli(sweep + base + [f"hydra.sweep.dir={tmp_path}/sweep", "resume=true"], cwd=REPO_ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert "already holds all 6 episodes of this config; not running them again" in log
    assert "resuming," in log
    for job in ("0", "1"):
        got = pd.read_csv(tmp_path / "sweep" / job / "results.csv")
        want = pd.read_csv(tmp_path / "reference" / job / "results.csv")
        pd.testing.assert_frame_equal(deterministic(got), deterministic(want))
    combined = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert len(combined) == 12 and set(combined["planner"]) == {"gd", "grasp"}
    assert not leftovers(tmp_path)
