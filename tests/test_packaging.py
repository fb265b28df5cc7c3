"""The wheel works on its own: built from this checkout, installed into a fresh venv, its console
scripts run a tiny job from another directory with the configs it carries, and outputs land under
that directory (or $GRASP_ROOT), not in site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY

pytestmark = pytest.mark.slow


def _sh(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, env for its processes): the wheel installed into a fresh venv. Its
    dependencies come from this .venv's site-packages through a .pth file added after the install
    (the same versions, no downloads); the editable install there is not seen (a path named in a
    .pth file is not itself scanned for .pth files)."""
    root = tmp_path_factory.mktemp("wheel")
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root),
         str(REPO_ROOT)])
    wheel = next(root.glob("grasp_wm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "grasp/conf/config.yaml" in names and "grasp/conf/env/pusht.yaml" in names
    assert any(n.startswith("hydra_plugins/grasp_sweeper/") for n in names)
    venv = root / "venv"
    _sh([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    _sh([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = Path(_sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_grasp_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRASP_ROOT")}
    env.update(WANDB_SILENT="true", OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    return venv / "bin", env


def test_the_installed_package_runs_a_job_from_another_directory(installed, tmp_path):
    bin_dir, env = installed
    where = _sh([str(bin_dir / "python"), "-c", "import grasp, grasp.config as c; print(grasp.__file__); "
                 "print(c.CONF_DIR); print(c.SOURCE_ROOT)"], cwd=tmp_path, env=env).stdout.split()
    assert str(bin_dir.parent) in where[0] and where[1].endswith("site-packages/grasp/conf") and where[2] == "None"

    job = _sh([str(bin_dir / "grasp-run"), "experiment=quick", "planner=cem", *TINY], cwd=tmp_path, env=env)
    results = list((tmp_path / "outputs").rglob("results.csv"))
    assert len(results) == 1, job.stdout[-2000:]
    row = pd.read_csv(results[0]).iloc[0]
    assert row["env"] == "wall" and row["planner"] == "cem"
    assert "grasp-wm=" in row["versions"] and pd.isna(row["git_commit"])  # no checkout to name
    assert list((tmp_path / "outputs" / "cache").rglob("*.pt")), "the model is cached under the cwd"

    tables = _sh([str(bin_dir / "grasp-tables"), str(results[0].parent), "--out", str(tmp_path / "tables")],
                 cwd=tmp_path, env=env)
    assert (tmp_path / "tables" / "table.md").is_file(), tables.stdout[-2000:]


def test_grasp_root_moves_the_outputs(installed, tmp_path):
    bin_dir, env = installed
    elsewhere = tmp_path / "shared"
    _sh([str(bin_dir / "grasp-run"), "experiment=quick", "planner=gd", "stages=[collect]", *TINY],
        cwd=tmp_path, env={**env, "GRASP_ROOT": str(elsewhere)})
    assert list((elsewhere / "outputs" / "cache" / "data").rglob("*.npz")) and not (tmp_path / "outputs").exists()


def test_a_bad_value_in_the_installed_package_exits_2(installed, tmp_path):
    bin_dir, env = installed
    done = subprocess.run([str(bin_dir / "grasp-run"), "experiment=quick", "eval.goal_source=nowhere", *TINY],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "eval.goal_source" in done.stderr and "Traceback" not in done.stderr
